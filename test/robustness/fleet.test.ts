/**
 * Studies against running servers (npm run eval -- --endpoint): real server processes on
 * loopback ports and the real CLI. The report equals the local study's, counts and intervals
 * alike, through a server killed and restarted, a client killed and resumed, and 503 storms;
 * a fleet of mixed model versions, and a journal of another study, are refused; a journal line
 * cut short by a kill is dropped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers.js';
import { DEFAULT_MODEL, ROOT } from '../paths.js';

const STUDY = [
  ...['--per-class', '6', '--clean-per-class', '6'],
  ...['--corruptions', 'gaussian_noise,motion_blur', '--severities', '1,5', '--timesteps', '4'],
];
/** (60 clean + 4 x 60 corrupted) images */
const PAIRS = 300;

let work: string;
let local: Record<string, unknown>;
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

/** A server on `port`, ready; BATCH_MAX_SIZE fixed so that it starts without measuring. */
async function server(port: number, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'server.js')], {
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      GRPC_PORT: '0',
      LOG_LEVEL: 'error',
      BATCH_MAX_SIZE: '8',
      ENGINE_WORKER: 'false',
      ...env,
    },
    stdio: 'ignore',
  });
  children.push(child);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server on ${port} exited with ${child.exitCode}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return child;
    } catch {
      // not yet listening
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server on ${port} did not become ready`);
}

/** The eval CLI with `args`; resolves with its exit code and output. */
function evalCli(args: string[]) {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'eval.js'), ...STUDY, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const done = new Promise<{ code: number | null; output: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, output })),
  );
  return { child, done };
}

const results = async (out: string) =>
  JSON.parse(await readFile(path.join(out, 'results.json'), 'utf8')) as Record<string, unknown>;

/** The parts of a report that the images' answers decide. */
const answers = (r: Record<string, unknown>) => ({
  clean: r['clean'],
  corruptions: r['corruptions'],
  mce: r['mce'],
  anytime: r['anytime'],
  served: r['served'],
});

async function journalLines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean);
}

/** Resolves once the journal holds at least `n` answers. */
async function journalReaches(file: string, n: number) {
  while ((await journalLines(file)).length - 1 < n) await new Promise((r) => setTimeout(r, 50));
}

/** Every answer of a journal once: the keys of its records are unique and all there. */
async function checkJournal(file: string) {
  const [, ...records] = (await journalLines(file)).map((l) => JSON.parse(l) as Record<string, unknown>);
  const keys = records.map((r) => `${r['corruption']}/${r['severity']}/${r['image']}`);
  expect(new Set(keys).size, 'no image answered twice').toBe(keys.length);
  expect(keys.length).toBe(PAIRS);
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'predify-fleet-'));
  const run = evalCli(['--out', path.join(work, 'local')]);
  const { code, output } = await run.done;
  expect(code, output).toBe(0);
  local = await results(path.join(work, 'local'));
}, 120_000);
afterAll(async () => rm(work, { recursive: true, force: true }));

describe('a study against servers', () => {
  it('over two servers equals the local study, and says what each server did', async () => {
    const [a, b] = [await freePort(), await freePort()];
    await Promise.all([server(a), server(b)]);
    const out = path.join(work, 'two');
    const { code, output } = await evalCli([
      '--out',
      out,
      '--endpoint',
      `http://127.0.0.1:${a},http://127.0.0.1:${b}/`,
    ]).done;
    expect(code, output).toBe(0);
    const remote = await results(out);
    expect(answers(remote)).toEqual(answers(local));
    const endpoints = (remote['speed'] as { endpoints: { images: number }[] }).endpoints;
    expect(endpoints).toHaveLength(2);
    expect(endpoints.reduce((n, e) => n + e.images, 0)).toBe(PAIRS);
    for (const e of endpoints) expect(e.images).toBeGreaterThan(0);
    await checkJournal(path.join(out, 'journal.jsonl'));
    expect(output).toMatch(
      /eval: 300\/300 images \(100\.0%\), .* images\/s \[127\.0\.0\.1:\d+ .*\/s, 127\.0\.0\.1:\d+ .*\/s\]/,
    );
  }, 120_000);

  it('goes on when a server is killed mid-run, and uses it again once it is back', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const [first] = await Promise.all([server(a), server(b)]);
    const out = path.join(work, 'killed-server');
    const run = evalCli([
      '--out',
      out,
      '--endpoint',
      `http://127.0.0.1:${a},http://127.0.0.1:${b}`,
      '--batch',
      '2',
    ]);
    await journalReaches(path.join(out, 'journal.jsonl'), 40);
    first.kill('SIGKILL');
    // the study goes on without it (the other server answers) before it comes back
    await journalReaches(path.join(out, 'journal.jsonl'), 60);
    await server(a);
    const { code, output } = await run.done;
    expect(code, output).toBe(0);
    expect(answers(await results(out))).toEqual(answers(local));
    await checkJournal(path.join(out, 'journal.jsonl'));
    const endpoints = ((await results(out))['speed'] as { endpoints: { retries: number }[] }).endpoints;
    expect(endpoints[0]!.retries).toBeGreaterThan(0);
  }, 120_000);

  // SIGKILL: the client dies wherever it is; SIGINT: Ctrl-C in its terminal.
  it.each(['SIGKILL', 'SIGINT'] as const)(
    'resumes a client stopped mid-run by %s: nothing twice, nothing lost, the same report',
    async (signal) => {
      const a = await freePort();
      await server(a);
      const out = path.join(work, `stopped-client-${signal}`);
      const journal = path.join(out, 'journal.jsonl');
      const first = evalCli(['--out', out, '--endpoint', `http://127.0.0.1:${a}`, '--batch', '2']);
      await journalReaches(journal, 60);
      first.child.kill(signal);
      await first.done;
      const before = (await journalLines(journal)).length - 1;
      expect(before).toBeLessThan(PAIRS);
      const again = evalCli(['--out', out, '--endpoint', `http://127.0.0.1:${a}`, '--resume']);
      const { code, output } = await again.done;
      expect(code, output).toBe(0);
      expect(output).toMatch(/resuming: \d+ answers in it/);
      expect(answers(await results(out))).toEqual(answers(local));
      await checkJournal(journal);
      // The resumed run asked only for what the journal lacked.
      const asked = ((await results(out))['speed'] as { endpoints: { images: number }[] }).endpoints[0]!
        .images;
      expect(asked).toBe(PAIRS - before);
    },
    120_000,
  );

  it('rides out 503 storms from a server with a tiny queue: retried, nothing lost', async () => {
    const a = await freePort();
    // 4 in a batch and 2 waiting: 3 requests of 2 images; the others are refused with 503.
    await server(a, { MAX_QUEUE: '2', BATCH_MAX_SIZE: '4' });
    const out = path.join(work, 'storm');
    const { code, output } = await evalCli([
      '--out',
      out,
      '--endpoint',
      `http://127.0.0.1:${a}`,
      '--batch',
      '2',
      '--concurrency',
      '6',
    ]).done;
    expect(code, output).toBe(0);
    expect(answers(await results(out))).toEqual(answers(local));
    const endpoints = ((await results(out))['speed'] as { endpoints: { retries: number }[] }).endpoints;
    expect(endpoints[0]!.retries).toBeGreaterThan(0);
    await checkJournal(path.join(out, 'journal.jsonl'));
  }, 120_000);
});

describe('eval:signal', () => {
  it('against a server equals the local study', async () => {
    const a = await freePort();
    await server(a);
    const args = [
      ...['--per-class', '4', '--clean-per-class', '4'],
      ...['--corruptions', 'gaussian_noise,contrast'],
    ];
    const run = (extra: string[]) => {
      const child = spawn(
        process.execPath,
        [path.join(ROOT, 'dist', 'cli', 'signal.js'), ...args, ...extra],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      children.push(child);
      let output = '';
      child.stdout!.on('data', (d) => (output += d));
      child.stderr!.on('data', (d) => (output += d));
      return new Promise<{ code: number | null; output: string }>((resolve) =>
        child.on('exit', (code) => resolve({ code, output })),
      );
    };
    const localRun = await run(['--out', path.join(work, 'signal-local')]);
    expect(localRun.code, localRun.output).toBe(0);
    const remoteRun = await run([
      '--out',
      path.join(work, 'signal-remote'),
      '--endpoint',
      `http://127.0.0.1:${a}`,
    ]);
    expect(remoteRun.code, remoteRun.output).toBe(0);
    const read = async (dir: string) =>
      JSON.parse(await readFile(path.join(work, dir, 'signal.json'), 'utf8'));
    expect(await read('signal-remote')).toEqual(await read('signal-local'));
  }, 120_000);
});

describe('what a study refuses', () => {
  it('a fleet serving mixed model versions stops the run, naming the server', async () => {
    const other = path.join(work, 'model-v2');
    await cp(DEFAULT_MODEL, other, { recursive: true });
    const manifest = JSON.parse(await readFile(path.join(other, 'manifest.json'), 'utf8'));
    await writeFile(path.join(other, 'manifest.json'), JSON.stringify({ ...manifest, modelVersion: '2' }));
    const [a, b] = [await freePort(), await freePort()];
    await Promise.all([server(a), server(b, { MODEL_DIR: other })]);
    const { code, output } = await evalCli([
      '--out',
      path.join(work, 'mixed'),
      '--endpoint',
      `http://127.0.0.1:${a},http://127.0.0.1:${b}`,
    ]).done;
    expect(code).toBe(1);
    expect(output).toContain(`http://127.0.0.1:${b} cannot take part: it serves fashion-pc version 2`);
    expect(output).toMatch(/mixed versions/);
  }, 120_000);

  it('drops a last line cut short by a kill, and refuses a journal of another study', async () => {
    const a = await freePort();
    await server(a);
    const out = path.join(work, 'damaged');
    const journal = path.join(out, 'journal.jsonl');
    expect((await evalCli(['--out', out, '--endpoint', `http://127.0.0.1:${a}`]).done).code).toBe(0);
    // A kill in the middle of a write leaves half a line.
    const lines = await journalLines(journal);
    await writeFile(journal, lines.slice(0, -1).join('\n') + '\n');
    await appendFile(journal, lines.at(-1)!.slice(0, 40));
    const resumed = await evalCli(['--out', out, '--endpoint', `http://127.0.0.1:${a}`, '--resume']).done;
    expect(resumed.code, resumed.output).toBe(0);
    expect(resumed.output).toMatch(/its last line was cut short by a kill and is dropped/);
    expect(answers(await results(out))).toEqual(answers(local));
    await checkJournal(journal);

    const foreign = await evalCli([
      '--out',
      out,
      '--endpoint',
      `http://127.0.0.1:${a}`,
      '--resume',
      '--seed',
      '7',
    ]).done;
    expect(foreign.code).toBe(2);
    expect(foreign.output).toMatch(/was started for another study \(seed 0, now 7\)/);
  }, 120_000);
});
