/**
 * A progress bar on stderr with the rate and the time left: redrawn in place on a terminal,
 * a line every 10% otherwise (logs, CI).
 */
export function progressReporter(label: string, unit = 'sample-steps') {
  const started = performance.now();
  let lastTenth = -1;
  return (done: number, total: number) => {
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    const seconds = (performance.now() - started) / 1000;
    const rate = done / Math.max(seconds, 1e-9);
    const eta = rate > 0 ? (total - done) / rate : 0;
    const width = 24;
    const filled = Math.round(fraction * width);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    const line = `${label} ${bar} ${(fraction * 100).toFixed(1)}% (${done}/${total} ${unit}, ${rate.toFixed(0)}/s, ${clock(seconds)} elapsed, ETA ${clock(eta)})`;
    if (process.stderr.isTTY) {
      process.stderr.write(`\r${line}`);
      if (done >= total) process.stderr.write('\n');
    } else if (Math.floor(fraction * 10) > lastTenth || done >= total) {
      lastTenth = Math.floor(fraction * 10);
      process.stderr.write(`${line}\n`);
    }
  };
}

/** 75 -> '1:15', 3725 -> '1:02:05' */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}
