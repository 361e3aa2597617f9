/**
 * The predify-classify command (dist/cli/classify.js, built by `pretest`): a directory of
 * images in this process and against a running server gives the server's own answers, with
 * progress on stderr; one broken image is reported without stopping the others.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp } from '../helpers.js';
import { ROOT, SAMPLES } from '../paths.js';

const CLI = path.join(ROOT, 'dist', 'cli', 'classify.js');
const KEY = 'a-test-key-of-sixteen-chars';

async function run(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await promisify(execFile)('node', [CLI, ...args], {
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let app: FastifyInstance;
let server: string;
let reference: Map<string, { index: number; confidence: number; steps: number }>;
let files: string[];

beforeAll(async () => {
  ({ app } = await buildTestApp({ API_KEYS: KEY }));
  server = await app.listen({ port: 0, host: '127.0.0.1' });
  files = (await readdir(SAMPLES)).filter((f) => f.endsWith('.png')).sort();
  reference = new Map();
  for (const f of files) {
    const body = (
      await app.inject({
        method: 'POST',
        url: '/classify?timesteps=3',
        headers: { 'content-type': 'image/png', authorization: `Bearer ${KEY}` },
        payload: await readFile(path.join(SAMPLES, f)),
      })
    ).json();
    reference.set(f, { ...body.prediction, steps: body.steps.length });
  }
}, 60_000);
afterAll(async () => app.close());

function checkJsonLines(stdout: string) {
  const lines = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(lines.map((l) => path.basename(l.file))).toEqual(files);
  for (const l of lines) {
    const ref = reference.get(path.basename(l.file))!;
    expect(l.prediction.index).toBe(ref.index);
    expect(l.prediction.confidence).toBeCloseTo(ref.confidence, 5);
    expect(l.steps).toHaveLength(ref.steps);
  }
}

describe('a directory', () => {
  it("with the model directory: the server's answers, in file order, with progress", async () => {
    const { code, stdout, stderr } = await run([SAMPLES, '--timesteps', '3', '--json']);
    expect(code).toBe(0);
    checkJsonLines(stdout);
    expect(stderr).toMatch(/100\.0% \(8\/8 images/);
  });

  it('against a running server, with the API key from the environment', async () => {
    const { code, stdout } = await run([SAMPLES, '--timesteps', '3', '--json', '--server', server], {
      PREDIFY_API_KEY: KEY,
    });
    expect(code).toBe(0);
    checkJsonLines(stdout);
  });

  it('prints one summary line per image, t = 0 and the last timestep', async () => {
    const { code, stdout, stderr } = await run([
      SAMPLES,
      '--timesteps',
      '3',
      '--server',
      server,
      '--api-key',
      KEY,
    ]);
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(files.length);
    const ref = reference.get('0002-trouser.png')!;
    expect(lines[files.indexOf('0002-trouser.png')]).toMatch(
      new RegExp(`0002-trouser\\.png +t=0 Trouser .* → +t=3 Trouser +${(ref.confidence * 100).toFixed(1)}%`),
    );
    expect(stderr).toContain(`8 of 8 images classified`);
  });

  it('reports a broken image and goes on with the others (exit 1)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'predify-cli-'));
    await cp(path.join(SAMPLES, '0002-trouser.png'), path.join(dir, 'a.png'));
    await writeFile(path.join(dir, 'b.png'), 'not an image');
    await writeFile(path.join(dir, 'notes.txt'), 'ignored: not an image extension');
    const { code, stdout, stderr } = await run([dir, '--timesteps', '1']);
    expect(code).toBe(1);
    expect(stdout).toMatch(/a\.png +t=0 Trouser/);
    expect(stderr).toMatch(/b\.png: /);
    expect(stderr).toContain('1 of 2 images classified');
    await rm(dir, { recursive: true, force: true });
  });
});

describe('one image', () => {
  it('prints the per-timestep table', async () => {
    const { code, stdout } = await run([path.join(SAMPLES, '0004-shirt.png'), '--timesteps', '3']);
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/0004-shirt\.png: \S+ \(\d+\.\d%\) after 3 timesteps, profile \w+/);
    expect(lines[1]).toMatch(/^ +t +prediction +confidence +pcoder1 +pcoder2 +pcoder3$/);
    expect(lines.slice(2).map((l) => l.trim().split(/\s+/)[0])).toEqual(['0', '1', '2', '3']);
  });
});

describe('failures', () => {
  it('a server that does not answer, or refuses the key, ends the run with a message', async () => {
    const image = path.join(SAMPLES, '0004-shirt.png');
    const unreachable = await run([image, '--server', 'http://127.0.0.1:9']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/predify-classify: cannot reach http:\/\/127\.0\.0\.1:9/);
    const refused = await run([image, '--server', server, '--api-key', 'wrong-key-of-sixteen-chars']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/PREDIFY_ERR_UNAUTHORIZED/);
  });

  it('usage errors exit 2', async () => {
    expect((await run([])).code).toBe(2);
    expect((await run([SAMPLES, '--model', 'x', '--server', 'y'])).code).toBe(2);
    expect((await run([SAMPLES, '--providers', 'tpu'])).code).toBe(2);
    expect((await run([SAMPLES, '--model-name', 'fashion-pc'])).code).toBe(2);
  });

  it("--model-name picks one of the server's models; an unknown one is the server's 404", async () => {
    const image = path.join(SAMPLES, '0004-shirt.png');
    const named = await run([image, '--server', server, '--model-name', 'fashion-pc', '--json'], {
      PREDIFY_API_KEY: KEY,
    });
    expect(named.code).toBe(0);
    expect(JSON.parse(named.stdout).model).toBe('fashion-pc');
    const unknown = await run([image, '--server', server, '--model-name', 'resnet'], {
      PREDIFY_API_KEY: KEY,
    });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/PREDIFY_ERR_UNKNOWN_MODEL/);
  });

  it('options the model cannot run are usage errors (exit 2), here and against a server', async () => {
    const image = path.join(SAMPLES, '0004-shirt.png');
    const local = await run([image, '--profile', 'nope']);
    expect(local.code).toBe(2);
    expect(local.stderr).toMatch(/no profile 'nope'/);
    expect((await run([image, '--timesteps', '5000'])).code).toBe(2);
    const remote = await run([image, '--server', server, '--profile', 'nope'], { PREDIFY_API_KEY: KEY });
    expect(remote.code).toBe(2);
    expect(remote.stderr).toMatch(/PREDIFY_ERR_UNKNOWN_PROFILE.*no profile 'nope'/);
    // topk: one rule here and there (the model has 10 classes)
    const topkLocal = await run([image, '--topk', '11']);
    expect([topkLocal.code, topkLocal.stderr]).toEqual([
      2,
      expect.stringMatching(/topk must be from 1 to 10/),
    ]);
    const topkRemote = await run([image, '--server', server, '--topk', '11'], { PREDIFY_API_KEY: KEY });
    expect([topkRemote.code, topkRemote.stderr]).toEqual([
      2,
      expect.stringMatching(/PREDIFY_ERR_TOPK_OUT_OF_RANGE.*topk must be from 1 to 10/),
    ]);
  });

  it("lists the service's default top-k (DEFAULT_TOPK, 5) per timestep, the server's own against one", async () => {
    const image = path.join(SAMPLES, '0004-shirt.png');
    const local = JSON.parse((await run([image, '--json', '--timesteps', '1'])).stdout);
    expect(local.steps[0].topk).toHaveLength(5);
    const remote = JSON.parse(
      (await run([image, '--json', '--timesteps', '1', '--server', server], { PREDIFY_API_KEY: KEY })).stdout,
    );
    expect(remote.steps[0].topk).toHaveLength(5);
    expect(JSON.parse((await run([image, '--json', '--topk', '2'])).stdout).steps[0].topk).toHaveLength(2);
  });
});
