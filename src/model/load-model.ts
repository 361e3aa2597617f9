/**
 * Loading a model directory: its manifest checked, each graph's checksum verified, the sessions
 * opened on the providers asked for, and the step graph's state names; every failure a coded
 * error that names the file.
 */
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { errors } from '../errors.js';
import { fileError } from './file-errors.js';
import {
  createGraph,
  type Graph,
  type Logger,
  type SessionSettings,
  type TensorMetadata,
} from './onnx-backend.js';
import { graphsToOpen, readManifest, type GraphSet, type GraphSpec, type Manifest } from './manifest.js';

export interface LoadedModel {
  readonly dir: string;
  readonly manifest: Manifest;
  /**
   * E_1..E_n, D_1..D_n and H, in PCoder order. A model opened to be served through its step
   * graph has only E_1 (the step graph takes E_1(x) as an input): see graphsToOpen.
   */
  readonly encoders: readonly Graph[];
  readonly feedback: readonly Graph[];
  readonly head: Graph | undefined;
  /** One timestep of the whole network in one graph, when the model has one (see stepNames). */
  readonly step?: Graph;
  /** Several timesteps in one call, the state carried inside, when the model has it. */
  readonly loop?: Graph;
  /** every session opened */
  readonly graphs: readonly Graph[];
  release(): Promise<void>;
}

type Dims = readonly (number | 'batch' | 'steps')[];

/**
 * The state tensors of the step graph, in PCoder order (1-based, as the exporter names them):
 * r_1..r_n, p_2..p_n (the prediction each level gets from above) and g_1..g_n. The graph
 * takes them as `name` and gives the next step's as `next_${name}`.
 */
export function stepNames(n: number): { r: string[]; p: string[]; g: string[] } {
  const range = (from: number) => Array.from({ length: n - from + 1 }, (_, k) => k + from);
  return {
    r: range(1).map((i) => `r${i}`),
    p: range(2).map((i) => `p${i}`),
    g: range(1).map((i) => `g${i}`),
  };
}

/** The tensors each role must take and give, derived from the PCoder shapes alone. */
function roleSignatures(m: Manifest) {
  const input: Dims = ['batch', m.input.channels, m.input.height, m.input.width];
  const top = m.pcoders[m.pcoders.length - 1]!;
  return {
    encoders: m.pcoders.map((pc, i) => ({
      inputs: { input: i === 0 ? input : (['batch', ...m.pcoders[i - 1]!.shape] as Dims) },
      outputs: { output: ['batch', ...pc.shape] as Dims },
    })),
    feedback: m.pcoders.map((pc) => ({
      inputs: {
        representation: ['batch', ...pc.shape] as Dims,
        target: ['batch', ...pc.targetShape] as Dims,
      },
      outputs: {
        prediction: ['batch', ...pc.targetShape] as Dims,
        error: ['batch'] as Dims,
        gradient: ['batch', ...pc.shape] as Dims,
      },
    })),
    head: {
      inputs: { input: ['batch', ...top.shape] as Dims },
      outputs: { logits: ['batch', m.labels.length] as Dims },
    },
    step: stepSignature(m, input),
    loop: loopSignature(stepSignature(m, input)),
  };
}

/** The step graph's signature with a leading `steps` dimension on the weights and the answers. */
function loopSignature(step: Signature): Signature {
  const { image, drive1, coefficients, ...state } = step.inputs;
  const { logits, errors } = step.outputs;
  return {
    inputs: {
      image: image!,
      drive1: drive1!,
      coefficients_all: ['steps', ...coefficients!],
      ...Object.fromEntries(Object.entries(state).map(([name, dims]) => [`init_${name}`, dims])),
    },
    outputs: {
      all_logits: ['steps', ...logits!],
      all_errors: ['steps', ...errors!],
      ...Object.fromEntries(Object.entries(state).map(([name, dims]) => [`final_${name}`, dims])),
    },
  };
}

function stepSignature(m: Manifest, input: Dims): Signature {
  const n = m.pcoders.length;
  const names = stepNames(n);
  const state: Record<string, Dims> = {};
  m.pcoders.forEach((pc, i) => {
    state[names.r[i]!] = ['batch', ...pc.shape];
    state[names.g[i]!] = ['batch', ...pc.shape];
    if (i > 0) state[names.p[i - 1]!] = ['batch', ...pc.targetShape];
  });
  return {
    inputs: {
      image: input,
      drive1: ['batch', ...m.pcoders[0]!.shape],
      coefficients: ['batch', n, 4],
      ...state,
    },
    outputs: {
      logits: ['batch', m.labels.length],
      errors: ['batch', n],
      ...Object.fromEntries(Object.entries(state).map(([name, dims]) => [`next_${name}`, dims])),
    },
  };
}

interface Signature {
  inputs: Record<string, Dims>;
  outputs: Record<string, Dims>;
}

const sameDims = (a: readonly (number | string)[], b: Dims) =>
  a.length === b.length && a.every((d, k) => (typeof b[k] === 'string' ? typeof d === 'string' : d === b[k]));

function checkSide(
  file: string,
  side: string,
  declared: GraphSpec['inputs'],
  actual: readonly TensorMetadata[],
  want: Record<string, Dims>,
): void {
  const names = (list: readonly { name: string }[]) =>
    list
      .map((t) => t.name)
      .sort()
      .join(', ');
  if (names(declared) !== Object.keys(want).sort().join(', ')) {
    throw errors.graphMismatch(
      file,
      `manifest lists ${side} [${names(declared)}], expected [${Object.keys(want).sort().join(', ')}]`,
    );
  }
  if (names(actual) !== names(declared)) {
    throw errors.graphMismatch(
      file,
      `graph has ${side} [${names(actual)}], the manifest says [${names(declared)}]`,
    );
  }
  for (const spec of declared) {
    const real = actual.find((t) => t.name === spec.name)!;
    const expected = want[spec.name]!;
    if (!sameDims(spec.shape, expected)) {
      throw errors.graphMismatch(
        file,
        `manifest shape of ${side} '${spec.name}' is [${spec.shape}], expected [${expected}]`,
      );
    }
    if (real.type !== 'float32' || !sameDims(real.shape, expected)) {
      throw errors.graphMismatch(
        file,
        `${side} '${spec.name}' is ${real.type} [${real.shape}] in the graph, expected float32 [${expected}]`,
      );
    }
  }
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Checks a file against the manifest's digest; `checked` spares hashing a shared file twice. */
async function verify(file: string, expected: string, checked: Map<string, Promise<string>>): Promise<void> {
  try {
    await access(file, constants.R_OK);
  } catch (err) {
    throw fileError(err, file);
  }
  let digest = checked.get(file);
  if (!digest) checked.set(file, (digest = sha256(file)));
  const actual = await digest;
  if (actual !== expected) throw errors.checksumMismatch(file, expected, actual);
}

async function openGraph(
  dir: string,
  spec: GraphSpec,
  want: Signature,
  settings: SessionSettings,
  log: Logger,
  checked: Map<string, Promise<string>>,
): Promise<Graph> {
  const file = path.join(dir, spec.file);
  await verify(file, spec.sha256, checked);
  if (spec.data) {
    const data = path.join(dir, spec.data.file);
    await verify(data, spec.data.sha256, checked);
    // onnxruntime (1.30) refuses external data with several hard links, taking them for a link
    // attack, and says so in terms of the graph; a deployment that hard-links identical files
    // (cp -l, rsync --link-dest) should hear which file and what to do.
    const { nlink } = await stat(data);
    if (nlink > 1)
      throw errors.graphInvalid(
        file,
        `its weights, ${data}, have ${nlink} hard links, and onnxruntime reads external data only from a file with one: copy the file rather than linking it`,
      );
  }
  const graph = await createGraph(file, settings, log);
  try {
    checkSide(file, 'inputs', spec.inputs, graph.inputs, want.inputs);
    checkSide(file, 'outputs', spec.outputs, graph.outputs, want.outputs);
  } catch (err) {
    await graph.release();
    throw err;
  }
  return graph;
}

/**
 * Opens a model directory: validates the manifest, verifies every graph's checksum and
 * signature, and creates one onnxruntime session per graph.
 */
/**
 * The provider the model's timesteps run on: that of its loop or step graph, which hold nearly
 * all of its weights (graph by graph, its first graph's). What batch tuning is recorded under.
 */
export const timestepProvider = (model: LoadedModel): string =>
  (model.loop ?? model.step ?? model.graphs[0])?.provider ?? 'cpu';

export async function loadModel(
  dir: string,
  settings: SessionSettings,
  log: Logger,
  which: GraphSet = 'served',
): Promise<LoadedModel> {
  const manifest = await readManifest(dir);
  const roles = roleSignatures(manifest);
  const wanted = new Set(graphsToOpen(manifest, which));
  const opened: Graph[] = [];
  const checked = new Map<string, Promise<string>>();
  const open = async (name: string, want: Signature) => {
    if (!wanted.has(name)) return undefined;
    const graph = await openGraph(dir, manifest.graphs[name]!, want, settings, log, checked);
    opened.push(graph);
    return graph;
  };
  try {
    const encoders: Graph[] = [];
    const feedback: Graph[] = [];
    for (const [i, pc] of manifest.pcoders.entries()) {
      const encoder = await open(pc.encoder, roles.encoders[i]!);
      if (encoder) encoders.push(encoder);
      const graph = await open(pc.feedback, roles.feedback[i]!);
      if (graph) feedback.push(graph);
    }
    const head = await open(manifest.head, roles.head);
    const step = manifest.step === undefined ? undefined : await open(manifest.step, roles.step);
    const loop = manifest.loop === undefined ? undefined : await open(manifest.loop, roles.loop);
    const providers = [...new Set(opened.map((g) => g.provider))];
    log.info(
      { model: manifest.name, dir, graphs: opened.length, providers },
      `model loaded on ${providers.join(', ')}`,
    );
    const onCpu = opened.filter((g) => g.provider === 'cpu').length;
    if (settings.providers[0] === 'cuda' && onCpu > 0)
      log.warn(
        { model: manifest.name, onCpu, graphs: opened.length },
        `CUDA was requested but ${onCpu} of ${opened.length} graphs run on the CPU (set GPU_REQUIRED=true to refuse to start instead)`,
      );
    return {
      dir,
      manifest,
      encoders,
      feedback,
      head,
      ...(step ? { step } : {}),
      ...(loop ? { loop } : {}),
      graphs: opened,
      release: async () => {
        await Promise.all(opened.map((g) => g.release()));
      },
    };
  } catch (err) {
    await Promise.all(opened.map((g) => g.release()));
    throw err;
  }
}
