/** A progress line on stderr: rewritten in place on a terminal, every 10% otherwise. */
export function progressReporter(label: string, unit = 'sample-steps') {
  const started = performance.now();
  let lastTenth = -1;
  return (done: number, total: number) => {
    const fraction = total > 0 ? done / total : 1;
    const seconds = (performance.now() - started) / 1000;
    const rate = done / Math.max(seconds, 1e-9);
    const eta = rate > 0 ? (total - done) / rate : 0;
    const line = `${label}: ${(fraction * 100).toFixed(1)}% (${done}/${total} ${unit}, ${rate.toFixed(0)}/s, ${Math.round(seconds)} s elapsed, ~${Math.round(eta)} s left)`;
    if (process.stderr.isTTY) {
      process.stderr.write(`\r${line}`);
      if (done >= total) process.stderr.write('\n');
    } else if (Math.floor(fraction * 10) > lastTenth || done >= total) {
      lastTenth = Math.floor(fraction * 10);
      process.stderr.write(`${line}\n`);
    }
  };
}
