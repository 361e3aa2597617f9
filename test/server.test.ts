/**
 * The real server process (dist/server.js, built by `pretest`) over a real socket: start-up,
 * readiness, a classification, start-up failures and SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { freePort, until } from './helpers.js';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_MODEL, PAPER_MODELS, ROOT, SAMPLES, TEST_MODELS } from './paths.js';

const children: ChildProcess[] = [];
afterEach(() =>
  children.splice(0).forEach((c) => {
    if (c.exitCode !== null || c.signalCode !== null) return;
    // a server in a group of its own takes its engine with it
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      c.kill('SIGKILL');
    }
  }),
);

/** `group`: the server leads a process group of its own, as a shell or systemd starts it. */
function start(env: Record<string, string>, group = false) {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'server.js')], {
    env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'info', GRPC_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: group,
  });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

async function waitReady(base: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${base}/readyz`)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not become ready');
}

/** Starts the server on a free port and waits until /readyz says ready. */
async function startReady(env: Record<string, string> = {}, group = false) {
  const port = await freePort();
  const server = start({ PORT: String(port), ...env }, group);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(base);
  return { ...server, base };
}

const postImage = (base: string, url: string, image: Buffer<ArrayBuffer>) =>
  fetch(`${base}${url}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: image });

/** Runs `body` while another listener holds `port` on 127.0.0.1. */
async function whileHeld(port: number, body: () => Promise<void>): Promise<void> {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve));
  try {
    await body();
  } finally {
    await new Promise((resolve) => holder.close(resolve));
  }
}

describe('server process', () => {
  it('serves the default model over a real socket and exits 0 on SIGTERM', async () => {
    const server = await startReady();
    const image = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
    const res = await postImage(server.base, '/classify?timesteps=8', image);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.steps).toHaveLength(9);
    expect(body.prediction.label).toBe('Ankle boot');
    // BATCH_MAX_SIZE=auto (the default): the engine worker measured its batch size before the
    // server said ready, and /models says what it chose.
    const log = server.output();
    const measured = log.indexOf('"msg":"batch size ');
    expect(measured).toBeGreaterThan(0);
    expect(measured).toBeLessThan(log.indexOf('"msg":"ready: '));
    const models = await (await fetch(`${server.base}/models`)).json();
    expect(models.models[0].batch.source).toBe('measured');
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    // One JSON log line per request, with a request id.
    const lines = server
      .output()
      .split('\n')
      .filter((l) => l.includes('"msg":"request"'));
    expect(
      lines.some((l) => /"reqId":"[^"]+".*"url":"\/classify\?timesteps=8".*"statusCode":200/.test(l)),
    ).toBe(true);
  });

  it('finishes every in-flight request with 200 after SIGTERM, then exits 0', async () => {
    const server = await startReady();
    const image = await readFile(path.join(SAMPLES, '0002-trouser.png'));
    const inflight = Array.from({ length: 8 }, () => postImage(server.base, '/classify?timesteps=64', image));
    // Wait until the server has received all of them, then ask it to stop.
    for (let k = 0; k < 200; k++) {
      const m = await (await fetch(`${server.base}/metrics`)).text();
      if (/^predify_classify_in_flight 8$/m.test(m)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    server.child.kill('SIGTERM');
    const answers = await Promise.all(inflight);
    expect(answers.map((r) => r.status)).toEqual(Array(8).fill(200));
    for (const r of answers) expect((await r.json()).steps).toHaveLength(65);
    expect(await server.exited).toBe(0);
  });

  /** Posts `count` requests and resolves once the server holds them all (its in-flight gauge). */
  async function inFlight(base: string, count: number, timesteps: number) {
    const image = await readFile(path.join(SAMPLES, '0002-trouser.png'));
    const requests = Array.from({ length: count }, () =>
      postImage(base, `/classify?timesteps=${timesteps}`, image),
    );
    for (let k = 0; k < 500; k++) {
      const m = await (await fetch(`${base}/metrics`)).text();
      if (new RegExp(`^predify_classify_in_flight ${count}$`, 'm').test(m)) return requests;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`the server never held ${count} requests at once`);
  }

  /** The processes whose parent is `pid`, from /proc. */
  async function childrenOf(pid: number): Promise<number[]> {
    const found: number[] = [];
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      // the fields after the command's closing parenthesis: state, ppid, pgrp, ...
      const [, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid) found.push(Number(entry));
    }
    return found;
  }
  /** Running, not a zombie that an init process has yet to reap. */
  const alive = async (pid: number) => {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  };

  it.each([
    ['SIGTERM', 'process'],
    ['SIGINT', 'process'],
    ['SIGTERM', 'thread'],
  ] as const)(
    'drains every in-flight request when %s reaches the whole process group (ENGINE_ISOLATION=%s)',
    async (signal, isolation) => {
      const server = await startReady({ ENGINE_ISOLATION: isolation }, true);
      const engines = await childrenOf(server.child.pid!);
      expect(engines.length).toBe(isolation === 'process' ? 1 : 0);
      const requests = await inFlight(server.base, 6, 32);
      // kill -- -PGID: the server and its engine child get the signal at the same moment.
      process.kill(-server.child.pid!, signal);
      const answers = await Promise.all(requests);
      expect(answers.map((r) => r.status)).toEqual(Array(6).fill(200));
      for (const r of answers) expect((await r.json()).steps).toHaveLength(33);
      expect(await server.exited).toBe(0);
      for (const pid of engines) expect(await alive(pid)).toBe(false);
    },
  );

  it('a second signal to the group during the drain stops at once', async () => {
    // 4 x 1024 timesteps: a drain of about 12 s on these cores.
    const server = await startReady({ MAX_TIMESTEPS: '1024' }, true);
    // the connections are cut by the second signal: their failures are expected
    const requests = Promise.allSettled(await inFlight(server.base, 4, 1024));
    process.kill(-server.child.pid!, 'SIGTERM');
    // draining: no longer ready, the four still in flight
    await until(
      async () =>
        (await fetch(`${server.base}/readyz`).then(
          (r) => r.status,
          () => 0,
        )) !== 200,
      'the drain to begin',
    );
    const second = Date.now();
    process.kill(-server.child.pid!, 'SIGINT');
    expect(await server.exited).not.toBe(0);
    expect(Date.now() - second).toBeLessThan(5000);
    expect((await requests).every((r) => r.status === 'rejected')).toBe(true);
  });

  it('leaves no engine process behind when the server is SIGKILLed', async () => {
    const server = await startReady({}, true);
    const [engine] = await childrenOf(server.child.pid!);
    expect(engine).toBeGreaterThan(0);
    // Busy in a model call when its parent dies: it goes once the call returns.
    const requests = Promise.allSettled(await inFlight(server.base, 2, 64));
    server.child.kill('SIGKILL');
    await server.exited;
    await requests;
    let gone = false;
    for (let k = 0; k < 100 && !gone; k++) {
      gone = !(await alive(engine!));
      if (!gone) await new Promise((r) => setTimeout(r, 50));
    }
    expect(gone).toBe(true);
  });

  it('serves a model exported from the paper architectures when MODEL_DIR points at it', async () => {
    const server = await startReady({ MODEL_DIR: path.join(TEST_MODELS, PAPER_MODELS[1]!.name) });
    const models = await (await fetch(`${server.base}/models`)).json();
    expect(models.models[0].name).toBe('pefficientnet-b0');
    expect(models.models[0].pcoders).toHaveLength(8);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  it('exits non-zero with one clear line when the model cannot load', async () => {
    const server = start({ PORT: String(await freePort()), MODEL_DIR: '/nonexistent/model' });
    expect(await server.exited).not.toBe(0);
    expect(server.output()).toMatch(
      /model failed to load: model file not found: \/nonexistent\/model\/manifest\.json/,
    );
  });

  // Each a copy of the default model with one thing broken.
  it.each([
    [
      'a graph file that is not ONNX (checksum updated to match)',
      async (dir: string) => {
        // The loop graph: served models run every call through it (graphsToOpen).
        await writeFile(path.join(dir, 'loop.onnx'), 'not a protobuf');
        const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
        manifest.graphs.loop.sha256 = createHash('sha256').update('not a protobuf').digest('hex');
        await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
      },
      /PREDIFY_ERR_GRAPH_INVALID.*model failed to load: \S+\/loop\.onnx: onnxruntime cannot load it/,
    ],
    [
      'a graph whose checksum does not match',
      async (dir: string) => appendFile(path.join(dir, 'encoder1.onnx'), Buffer.from([0])),
      /PREDIFY_ERR_CHECKSUM_MISMATCH.*model failed to load: \S+\/encoder1\.onnx: sha256 is/,
    ],
    [
      'an invalid manifest',
      async (dir: string) => {
        const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
        manifest.name = 3;
        await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
      },
      /PREDIFY_ERR_MANIFEST_INVALID.*model failed to load: \S+\/manifest\.json: name: Invalid input: expected string/,
    ],
    [
      'GPU_REQUIRED on a machine without CUDA',
      async () => {},
      /PREDIFY_ERR_GPU_UNAVAILABLE.*model failed to load: \S+\/encoder1\.onnx: GPU_REQUIRED is set/,
      { EXECUTION_PROVIDERS: 'cuda,cpu', GPU_REQUIRED: 'true' },
    ],
  ] as [string, (dir: string) => Promise<unknown>, RegExp, Record<string, string>?][])(
    'exits non-zero with one log line naming the cause, never ready, for %s',
    async (_name, damage, line, env = {}) => {
      const dir = await mkdtemp(path.join(tmpdir(), 'predify-broken-'));
      await cp(DEFAULT_MODEL, dir, { recursive: true });
      await damage(dir);
      const port = await freePort();
      const server = start({ PORT: String(port), MODEL_DIR: dir, ...env });
      let everReady = false;
      const watch = (async () => {
        while (server.child.exitCode === null) {
          everReady ||= await fetch(`http://127.0.0.1:${port}/readyz`).then(
            (r) => r.ok,
            () => false,
          );
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      expect(await server.exited).not.toBe(0);
      await watch;
      expect(everReady).toBe(false);
      const fatal = server
        .output()
        .split('\n')
        .filter((l) => l.includes('"level":60'));
      expect(fatal).toHaveLength(1);
      expect(fatal[0]).toMatch(line);
      await rm(dir, { recursive: true, force: true });
    },
  );

  it('exits non-zero naming the variable when the configuration is invalid', async () => {
    const server = start({ PORT: 'eighty' });
    expect(await server.exited).not.toBe(0);
    expect(server.output()).toMatch(/invalid configuration: PORT: PORT must be a whole number/);
  });

  /** The process's fatal lines: exactly one, with its code, and no stack trace anywhere. */
  const fatalLine = (output: string) => {
    expect(output).not.toMatch(/"stack"|\n\s+at /);
    const fatal = output.split('\n').filter((l) => l.includes('"level":60'));
    expect(fatal).toHaveLength(1);
    return JSON.parse(fatal[0]!) as { code: string; msg: string };
  };

  it('a GRPC_PORT in use stops the start-up with the same code, naming GRPC_PORT', async () => {
    const port = await freePort();
    await whileHeld(port, async () => {
      const taken = start({ PORT: String(await freePort()), GRPC_PORT: String(port) });
      expect(await taken.exited).toBe(1);
      expect(fatalLine(taken.output())).toEqual(
        expect.objectContaining({
          code: 'PREDIFY_ERR_PORT_IN_USE',
          msg: `cannot listen on 127.0.0.1:${port}: the port is in use (set GRPC_PORT)`,
        }),
      );
    });
  });

  it('exits with one coded line, no stack, when the port is in use or HOST does not resolve', async () => {
    const port = await freePort();
    await whileHeld(port, async () => {
      const taken = start({ PORT: String(port) });
      expect(await taken.exited).toBe(1);
      expect(fatalLine(taken.output())).toEqual(
        expect.objectContaining({
          code: 'PREDIFY_ERR_PORT_IN_USE',
          msg: `cannot listen on 127.0.0.1:${port}: the port is in use (set PORT)`,
        }),
      );
    });
    const nowhere = start({ PORT: String(await freePort()), HOST: 'no-such-host.invalid' });
    expect(await nowhere.exited).toBe(1);
    expect(fatalLine(nowhere.output())).toEqual(
      expect.objectContaining({
        code: 'PREDIFY_ERR_LISTEN_FAILED',
        msg: expect.stringContaining("HOST 'no-such-host.invalid' does not resolve"),
      }),
    );
  });

  it('names an unknown DEFAULT_MODEL with its code', async () => {
    const server = start({ PORT: String(await freePort()), DEFAULT_MODEL: 'nope' });
    expect(await server.exited).toBe(1);
    expect(fatalLine(server.output())).toEqual(
      expect.objectContaining({ code: 'PREDIFY_ERR_UNKNOWN_MODEL', msg: expect.stringContaining("'nope'") }),
    );
  });

  it('says at start-up what it serves and whether keys are on, and warns of look-alike variables', async () => {
    const server = await startReady({ MODELDIR: '/nonexistent', API_KEYS: '' });
    const out = server.output();
    expect(out).toMatch(
      /"variable":"MODELDIR","meant":"MODEL_DIR".*MODELDIR is not a setting \(did you mean MODEL_DIR\?\)/,
    );
    expect(out).toMatch(/MODEL_DIR is not set: serving the shipped demo model/);
    expect(out).toMatch(/"apiKeys":0.*API keys off/);
    server.child.kill('SIGTERM');
    await server.exited;
    const keyed = await startReady({ API_KEYS: 'a-key-of-sixteen-chars,another-key-of-16-chars' });
    expect(keyed.output()).toMatch(/"apiKeys":2.*API keys on: 2 accepted/);
    keyed.child.kill('SIGTERM');
    await keyed.exited;
  });

  it('refuses look-alike variables in production, naming each', async () => {
    const server = start({ PORT: String(await freePort()), NODE_ENV: 'production', MODELDIR: '/models' });
    expect(await server.exited).toBe(1);
    expect(fatalLine(server.output()).msg).toBe(
      'invalid configuration: MODELDIR is not a setting (did you mean MODEL_DIR?)',
    );
  });
});

describe('engine supervision in the real process (ENGINE_FAULTS=1, SIGUSR2)', () => {
  const waitFor = async (check: () => Promise<boolean>, ms = 30_000) => {
    const until = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > until) throw new Error('condition not reached');
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const status = (base: string, route: string) =>
    fetch(`${base}${route}`).then(
      (r) => r.status,
      () => 0,
    );

  it('restarts a worker killed by SIGUSR2; past ENGINE_MAX_RESTARTS, fails liveness and exits 1', async () => {
    const server = await startReady({ ENGINE_FAULTS: '1', ENGINE_MAX_RESTARTS: '1' });
    server.child.kill('SIGUSR2');
    await waitFor(async () => (await status(server.base, '/readyz')) === 503);
    await waitFor(async () => (await status(server.base, '/readyz')) === 200);
    const image = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
    expect((await postImage(server.base, '/classify?timesteps=2', image)).status).toBe(200);
    // A second death in ten minutes is past the limit of one: a crash loop.
    server.child.kill('SIGUSR2');
    await waitFor(async () => [503, 0].includes(await status(server.base, '/healthz')));
    expect(await server.exited).toBe(1);
    expect(server.output()).toMatch(/cannot be restarted: exiting after draining/);
  });

  it('a death during shutdown does not hang it', async () => {
    const server = await startReady({ ENGINE_FAULTS: '1', SHUTDOWN_DRAIN_MS: '20000' });
    const image = await readFile(path.join(SAMPLES, '0002-trouser.png'));
    const inflight = Array.from({ length: 4 }, () => postImage(server.base, '/classify?timesteps=64', image));
    await until(
      async () =>
        /^predify_classify_in_flight 4$/m.test(await (await fetch(`${server.base}/metrics`)).text()),
      'the four requests to arrive',
    );
    const started = Date.now();
    server.child.kill('SIGTERM');
    server.child.kill('SIGUSR2');
    const answers = await Promise.all(inflight.map((p) => p.then((r) => r.status).catch(() => 0)));
    expect(answers.every((s) => s === 200 || s === 503)).toBe(true);
    await server.exited;
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses ENGINE_FAULTS in production', async () => {
    const server = start({ ENGINE_FAULTS: '1', NODE_ENV: 'production' });
    expect(await server.exited).not.toBe(0);
    expect(server.output()).toMatch(/ENGINE_FAULTS: ENGINE_FAULTS=1 injects engine deaths/);
  });
});
