/** The engine's public face: images in, per-timestep classifications out. No HTTP here. */
import type { LoadedModel } from '../model/load-model.js';
import { PredictiveLoop, type StepOutput } from './predictive-loop.js';
import { summarise, type StepSummary } from './results.js';
import { SerialQueue } from './serial-queue.js';

export interface ClassifyOptions {
  timesteps: number;
  topk: number;
}

export interface Classification {
  steps: StepSummary[];
  prediction: { label: string; index: number; confidence: number };
}

export interface ClassifyResult {
  results: Classification[];
  queueMs: number;
  inferenceMs: number;
}

export class Classifier {
  readonly model: LoadedModel;
  readonly #loop: PredictiveLoop;
  readonly #queue = new SerialQueue();

  constructor(model: LoadedModel) {
    this.model = model;
    this.#loop = new PredictiveLoop(model);
  }

  get name(): string {
    return this.model.manifest.name;
  }

  /** Raw per-timestep outputs of one batch, queued behind any run in progress. */
  async runBatch(images: Float32Array, batch: number, timesteps: number): Promise<StepOutput[]> {
    return (await this.#queue.run(() => this.#loop.run(images, batch, timesteps))).value;
  }

  /** Classifies images (each preprocessed to the model's input) in one batch. */
  async classify(images: readonly Float32Array[], options: ClassifyOptions): Promise<ClassifyResult> {
    const perImage = images[0]?.length ?? 0;
    const batch = new Float32Array(perImage * images.length);
    images.forEach((img, b) => batch.set(img, b * perImage));
    const { value, waitedMs } = await this.#queue.run(async () => {
      const started = performance.now();
      const steps = await this.#loop.run(batch, images.length, options.timesteps);
      return { steps, inferenceMs: performance.now() - started };
    });
    const { labels, pcoders } = this.model.manifest;
    const names = pcoders.map((pc) => pc.name);
    const results = images.map((_, b) => {
      const steps = summarise(value.steps, b, labels, names, options.topk);
      const last = steps[steps.length - 1]!;
      return { steps, prediction: { label: last.label, index: last.index, confidence: last.confidence } };
    });
    return { results, queueMs: waitedMs, inferenceMs: value.inferenceMs };
  }

  close(): Promise<void> {
    return this.model.release();
  }
}
