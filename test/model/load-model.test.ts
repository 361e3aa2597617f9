/** A model directory is verified before it is served: manifest, files, checksums, signatures. */
import { cp, link, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStepper } from '../../src/engine/open-stepper.js';
import { loadModel } from '../../src/model/load-model.js';
import { parseManifest } from '../../src/model/manifest.js';
import { silent } from '../helpers.js';
import { DEFAULT_MODEL } from '../paths.js';

let dir: string;
const settings = { providers: ['cpu'] as const, intraOpThreads: 1 };

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests poke at arbitrary fields
async function editManifest(edit: (m: any) => void): Promise<void> {
  const file = path.join(dir, 'manifest.json');
  const m = JSON.parse(await readFile(file, 'utf8'));
  edit(m);
  await writeFile(file, JSON.stringify(m));
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'predify-model-'));
  await cp(DEFAULT_MODEL, dir, { recursive: true, filter: (src) => !src.endsWith('.pt') });
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('loadModel', () => {
  it('opens, to serve a model, E_1 and its loop graph only: each weight is held once', async () => {
    const model = await loadModel(dir, settings, silent);
    expect(model.loop?.provider).toBe('cpu');
    expect(model.step).toBeUndefined();
    expect(model.encoders).toHaveLength(1);
    expect(model.feedback).toHaveLength(0);
    expect(model.head).toBeUndefined();
    expect(model.graphs.map((g) => path.basename(g.file)).sort()).toEqual(['encoder1.onnx', 'loop.onnx']);
    // The step and loop graphs share one weight file: no two open sessions may read the same one
    // (each session keeps its own copy of what it reads).
    const specs = Object.values(model.manifest.graphs);
    const dataFiles = model.graphs.flatMap((g) => {
      const spec = specs.find((s) => s.file === path.basename(g.file))!;
      return spec.data ? [spec.data.file] : [];
    });
    expect(new Set(dataFiles).size).toBe(dataFiles.length);
    // It still computes single timesteps (through the loop graph at one iteration).
    const stepper = openStepper(model);
    expect(stepper.maxStepsPerCall).toBe(Infinity);
    expect(() => openStepper(model, { stepGraph: false })).toThrow(/needs every graph/);
    await model.release();
    const single = await loadModel(dir, settings, silent, 'single-step');
    expect(single.loop).toBeUndefined();
    expect(single.graphs.map((g) => path.basename(g.file)).sort()).toEqual(['encoder1.onnx', 'step.onnx']);
    await single.release();
  });

  it('opens every graph, one session each, when asked for all', async () => {
    const model = await loadModel(dir, settings, silent, 'all');
    expect(model.encoders).toHaveLength(model.manifest.pcoders.length);
    expect(model.feedback).toHaveLength(model.manifest.pcoders.length);
    expect(model.head?.provider).toBe('cpu');
    expect(model.graphs).toHaveLength(Object.keys(model.manifest.graphs).length);
    await model.release();
  });

  it('names a hard-linked weight file, which onnxruntime would refuse to read', async () => {
    const other = path.join(dir, 'step.onnx.data.link');
    await link(path.join(dir, 'step.onnx.data'), other);
    await expect(loadModel(dir, settings, silent)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_GRAPH_INVALID',
      message: expect.stringMatching(/step\.onnx\.data, have 2 hard links.*copy the file/),
    });
    await rm(other);
    const model = await loadModel(dir, settings, silent);
    await model.release();
  });

  it('names the manifest file when it is missing', async () => {
    await rm(path.join(dir, 'manifest.json'));
    await expect(loadModel(dir, settings, silent)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_MODEL_NOT_FOUND',
      message: expect.stringContaining(path.join(dir, 'manifest.json')),
    });
  });

  it('names the file and the field of an invalid manifest', async () => {
    await editManifest((m) => (m.pcoders[1].hyperparameters.beta = 'high'));
    await expect(loadModel(dir, settings, silent)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_MANIFEST_INVALID',
      message: expect.stringMatching(/manifest\.json: pcoders\.1\.hyperparameters\.beta: /),
    });
  });

  it('ignores feedback into the top PCoder, as the Predify package does, and records it as 0', async () => {
    await editManifest((m) => {
      m.pcoders.at(-1).hyperparameters.lambda = 0.1;
      m.profiles.shared = { hyperparameters: m.pcoders.map(() => ({ beta: 0.8, lambda: 0.1, alpha: 0.01 })) };
    });
    const model = await loadModel(dir, settings, silent);
    expect(model.manifest.pcoders.at(-1)!.hyperparameters.lambda).toBe(0);
    expect(model.manifest.profiles['shared']!.hyperparameters.map((h) => h.lambda)).toEqual([0.1, 0.1, 0]);
    await model.release();
  });

  it('refuses a graph file whose checksum does not match', async () => {
    const file = path.join(dir, 'loop.onnx');
    const bytes = await readFile(file);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(file, bytes);
    await expect(loadModel(dir, settings, silent)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_CHECKSUM_MISMATCH',
      message: expect.stringContaining('loop.onnx'),
    });
  });

  it('checks the graphs it opens: those of the graph-by-graph path when asked for all', async () => {
    const file = path.join(dir, 'head.onnx');
    const bytes = await readFile(file);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(file, bytes);
    await (await loadModel(dir, settings, silent)).release();
    await expect(loadModel(dir, settings, silent, 'all')).rejects.toMatchObject({
      code: 'PREDIFY_ERR_CHECKSUM_MISMATCH',
      message: expect.stringContaining('head.onnx'),
    });
  });

  it('refuses a missing graph file', async () => {
    await rm(path.join(dir, 'loop.onnx'));
    await expect(loadModel(dir, settings, silent)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_MODEL_NOT_FOUND',
    });
  });

  it('refuses a graph whose inputs do not match its role', async () => {
    // encoder2's file in encoder1's place, checksum updated: the signature check catches it.
    await editManifest((m) => (m.graphs.encoder1 = m.graphs.encoder2));
    await expect(loadModel(dir, settings, silent)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_GRAPH_MISMATCH',
      message: expect.stringContaining('encoder2.onnx'),
    });
  });

  it('refuses a corrupt ONNX file that has the right checksum', async () => {
    const file = path.join(dir, 'encoder1.onnx');
    await writeFile(file, 'not an onnx graph');
    const { createHash } = await import('node:crypto');
    const sum = createHash('sha256').update('not an onnx graph').digest('hex');
    await editManifest((m) => (m.graphs.encoder1.sha256 = sum));
    await expect(loadModel(dir, settings, silent)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_GRAPH_INVALID',
    });
  });

  it('falls back to the next execution provider when one is unavailable', async () => {
    const warnings: string[] = [];
    const log = { ...silent, info() {}, warn: (_o: object, msg: string) => void warnings.push(msg) };
    const model = await loadModel(dir, { providers: ['cuda', 'cpu'], intraOpThreads: 1 }, log, 'all');
    // This machine has no CUDA: every graph lands on the CPU, each fallback logged, and one
    // line says how many graphs that concerns.
    expect(model.head?.provider).toBe('cpu');
    expect(warnings.filter((w) => w === 'execution provider unavailable, trying the next one')).toHaveLength(
      9,
    );
    expect(warnings).toContain(
      'CUDA was requested but 9 of 9 graphs run on the CPU (set GPU_REQUIRED=true to refuse to start instead)',
    );
    await model.release();
  });

  it('with gpuRequired, refuses to fall back to the CPU, naming the CUDA failure', async () => {
    const settings = { providers: ['cuda', 'cpu'] as const, intraOpThreads: 1, gpuRequired: true };
    const err = await loadModel(dir, settings, silent).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'PREDIFY_ERR_GPU_UNAVAILABLE', statusCode: 500 });
    expect((err as Error).message).toMatch(
      /encoder1\.onnx: GPU_REQUIRED is set and the CUDA provider cannot run it \(cuda: /,
    );
  });

  it('logs the provider each session really uses', async () => {
    const lines: string[] = [];
    const log = { ...silent, warn() {}, info: (_o: object, msg: string) => void lines.push(msg) };
    const model = await loadModel(dir, { providers: ['cpu'], intraOpThreads: 1 }, log, 'all');
    expect(lines.filter((l) => l.startsWith('session on cpu: '))).toHaveLength(9);
    expect(lines).toContain('session on cpu: step.onnx');
    expect(lines).toContain('session on cpu: head.onnx');
    await model.release();
  });
});

describe('parseManifest', () => {
  it('refuses a graph file outside the model directory', async () => {
    const raw = JSON.parse(await readFile(path.join(DEFAULT_MODEL, 'manifest.json'), 'utf8'));
    raw.graphs.head.file = '../../etc/passwd.onnx';
    expect(() => parseManifest(raw, 'm.json')).toThrow(/m\.json: graphs\.head\.file: must be a file name/);
  });

  it('refuses a PCoder chain whose shapes do not connect', async () => {
    const raw = JSON.parse(await readFile(path.join(DEFAULT_MODEL, 'manifest.json'), 'utf8'));
    raw.pcoders[1].targetShape = [7, 7, 7];
    expect(() => parseManifest(raw, 'm.json')).toThrow(/pcoders\.1\.targetShape: is \[7,7,7\]/);
  });
});
