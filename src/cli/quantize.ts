#!/usr/bin/env node
/**
 * Makes an int8 variant of a model (docs/int8.md): runs the model's dynamics on training images
 * through its own step graph, with every convolution's input and output also returned, records
 * each one's range, and has scripts/quantize_model.py write the variant with those ranges. Then
 * it runs the same images through the variant and reports how far its answers are from the
 * float32 model's.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { DEFAULT_MODEL_DIR } from '../config/config.js';
import { newSample, type SampleStep } from '../engine/predictive-step.js';
import { openStepper } from '../engine/open-stepper.js';
import { preprocess } from '../image/preprocess.js';
import { loadModel, type LoadedModel } from '../model/load-model.js';
import { profilesOf, type InputSpec } from '../model/manifest.js';
import { createGraph, type Graph } from '../model/onnx-backend.js';
import { BENCHMARK_CORRUPTIONS } from '../robustness/imagenet-c/index.js';
import { FASHION_MNIST, readImageSet } from '../robustness/image-set.js';
import { StudyInputs } from '../robustness/study-inputs.js';
import { argmax, CLEAN, type Condition } from '../robustness/evaluate.js';
import { parseCli, wholeNumber } from './args.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Fashion-MNIST training images the shipped model was trained on (the rest is its validation split). */
const TRAINING = { from: 0, to: 50_000 };

const usage = `usage: npm run quantize -- [--model DIR] --out DIR [--images N | --image-dir DIR] [--timesteps T] [--name NAME]

  --model      the float32 model (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --out        where to write the int8 variant (a model directory of its own)
  --images     calibration images (default 512): Fashion-MNIST training images, half clean and
               half under the corruptions of npm run eval, for a 28 x 28 grey model; with
               --image-dir, the first N files by name (default all)
  --image-dir  calibration images from a directory (PNG, JPEG, WebP...) for any other model
  --timesteps  timesteps of dynamics per image (default: the most any profile serves by default, else 10)
  --name       the variant's model name (default: <name>-int8)`;

const { values } = parseCli(
  {
    options: {
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      out: { type: 'string' },
      images: { type: 'string' },
      'image-dir': { type: 'string' },
      timesteps: { type: 'string' },
      name: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);
if (!values.out) {
  console.error(usage);
  process.exit(2);
}
if (path.resolve(values.out) === path.resolve(values.model)) {
  console.error('--out must be a directory of its own: the variant does not replace its model');
  process.exit(2);
}
/** The Python half; what it says on failure has gone to stderr already. */
const python = (args: string[]) => {
  try {
    return execFileSync('/usr/bin/python3', [path.join(ROOT, 'scripts', 'quantize_model.py'), ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
  } catch {
    throw new Error(`scripts/quantize_model.py ${args[0]} failed`);
  }
};

const log = pino({ level: 'warn' });
const settings = { providers: ['cpu'] as const, intraOpThreads: 0 };
const source = await loadModel(values.model, settings, log, 'single-step').catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
const { manifest } = source;
if (!source.step) {
  console.error(`${values.model} has no step graph: re-export it (docs/int8.md)`);
  process.exit(1);
}
// By default as many timesteps as any profile serves a request that names none: its anytime
// cap where it runs auto by default, else its recommended timesteps; 10 where none says.
const served = Object.values(profilesOf(manifest)).map((p) =>
  p.anytime?.default ? p.anytime.maxTimesteps : (p.recommendedTimesteps ?? 0),
);
const timesteps = wholeNumber('timesteps', values.timesteps, Math.max(...served) || 10);
const images = await calibrationImages(manifest.input).catch((err: Error) => {
  console.error(`calibration images: ${err.message}`);
  process.exit(1);
});
console.log(`calibrating ${manifest.name} on ${images.length} images, t = 0..${timesteps}`);

const work = await mkdtemp(path.join(tmpdir(), 'quantize-'));
try {
  const instrumented = path.join(work, 'step.onnx');
  const names = JSON.parse(python(['instrument', values.model, instrumented])) as string[];
  const ranges = new Map(names.map((name) => [name, [Infinity, -Infinity] as [number, number]]));
  const graph = await createGraph(instrumented, settings, log);
  const reference = await dynamics(recording(source, graph, ranges), images, timesteps);
  await graph.release();
  await source.release();

  const record = {
    ranges: Object.fromEntries(ranges),
    calibration: {
      images: images.length,
      from: values['image-dir'] ?? `Fashion-MNIST training images ${TRAINING.from}..${TRAINING.to - 1}`,
      timesteps,
      tensors: names.length,
    },
  };
  const rangesFile = path.join(work, 'ranges.json');
  await writeFile(rangesFile, JSON.stringify(record));
  python(['write', values.model, values.out, rangesFile, ...(values.name ? ['--name', values.name] : [])]);

  const variant = await loadModel(values.out, settings, log, 'single-step');
  const quantized = await dynamics(variant, images, timesteps);
  await variant.release();
  console.log(
    JSON.stringify({ model: variant.manifest.name, dir: values.out, ...compare(reference, quantized) }),
  );
} catch (err) {
  console.error((err as Error).message);
  process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}

/** The model as it is, but its step graph also returns the tensors to calibrate, whose ranges it records. */
function recording(model: LoadedModel, graph: Graph, ranges: Map<string, [number, number]>): LoadedModel {
  const extra = [...ranges.keys()];
  const step: Graph = {
    ...graph,
    outputs: model.step!.outputs,
    async run(feeds, wanted) {
      const all = wanted ?? model.step!.outputs.map((o) => o.name);
      const out = await graph.run(feeds, [...new Set([...all, ...extra])]);
      for (const name of extra) {
        const range = ranges.get(name)!;
        for (const v of out[name]!.data) {
          if (v < range[0]) range[0] = v;
          if (v > range[1]) range[1] = v;
        }
      }
      return out;
    },
  };
  return { ...model, step };
}

/** Every image's dynamics for t = 0..T, 32 at a time, through `model`'s step graph. */
async function dynamics(model: LoadedModel, inputs: Float32Array[], T: number): Promise<SampleStep[][]> {
  const stepper = openStepper(model);
  const out: SampleStep[][] = [];
  for (let from = 0; from < inputs.length; from += 32) {
    const samples = inputs.slice(from, from + 32).map((x) => newSample(x, undefined, T));
    const steps: SampleStep[][] = samples.map(() => []);
    for (let t = 0; t <= T; t++) (await stepper.step(samples)).forEach((s, b) => steps[b]!.push(s));
    out.push(...steps);
  }
  return out;
}

/** How often the variant's answer differs from float32's, and by how much, per timestep. */
function compare(reference: SampleStep[][], quantized: SampleStep[][]) {
  const T = reference[0]!.length;
  const agreement: number[] = [];
  let maxLogitDiff = 0;
  for (let t = 0; t < T; t++) {
    let same = 0;
    reference.forEach((steps, k) => {
      const a = steps[t]!.logits;
      const b = quantized[k]![t]!.logits;
      if (argmax(a) === argmax(b)) same++;
      a.forEach((v, j) => (maxLogitDiff = Math.max(maxLogitDiff, Math.abs(v - b[j]!))));
    });
    agreement.push(Number((same / reference.length).toFixed(4)));
  }
  return { sameAnswerAsFloat32: agreement, maxLogitDiff: Number(maxLogitDiff.toPrecision(3)) };
}

async function calibrationImages(spec: InputSpec): Promise<Float32Array[]> {
  const dir = values['image-dir'];
  if (dir) {
    const files = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isFile() && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort()
      .slice(0, wholeNumber('images', values.images, Infinity));
    if (files.length === 0) throw new Error(`${dir}: no image files`);
    const tensors: Float32Array[] = [];
    for (const name of files)
      tensors.push((await preprocess(await readFile(path.join(dir, name)), spec)).tensor);
    return tensors;
  }
  if (spec.channels !== 1 || spec.height !== 28 || spec.width !== 28) {
    console.error(
      `${manifest.name} does not take 28 x 28 grey images: give calibration images with --image-dir`,
    );
    process.exit(2);
  }
  const count = wholeNumber('images', values.images, 512);
  const set = await readImageSet(FASHION_MNIST, {
    labels: manifest.labels,
    perClass: Math.ceil(count / manifest.labels.length),
    fashion: { split: 'train', from: TRAINING.from, to: TRAINING.to },
  });
  // Half clean, half under each benchmark corruption in turn, at every severity: the dynamics
  // are served on both, and their ranges differ.
  const corrupted = BENCHMARK_CORRUPTIONS.flatMap((corruption) =>
    [1, 2, 3, 4, 5].map((severity): Condition => ({ corruption, severity })),
  );
  const inputs = new StudyInputs(spec);
  const tensors: Float32Array[] = [];
  for (const [k, image] of set.clean.slice(0, count).entries()) {
    const opened = (await inputs.open(image))!;
    const condition = k % 2 === 0 ? CLEAN : corrupted[(k >> 1) % corrupted.length]!;
    tensors.push((await inputs.inputs([opened], condition))[0]!);
  }
  return tensors;
}
