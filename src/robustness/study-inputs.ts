/**
 * What a study feeds the engine for an image under a condition: exactly what the service
 * would compute for it. A clean image goes through preprocess(), the code /classify runs; a
 * corrupted one is decoded and resized as the model's manifest says (sRGB), corrupted at the
 * size the model sees it (as ImageNet-C corrupted its 224-pixel crops), then given the model's
 * colours and normalisation as preprocess() would.
 */
import { readFile } from 'node:fs/promises';
import { ServiceError } from '../errors.js';
import {
  decodeAtModelSize,
  modelInputsFromRgb,
  normalise,
  preprocess,
  type RawPixels,
} from '../image/preprocess.js';
import type { InputSpec } from '../model/manifest.js';
import { ImageSetError, type StudyImage } from './image-set.js';
import {
  addGaussianNoise,
  corruptionSeed,
  corruptPixels,
  loadCorruptionAssets,
  type Corruption,
  type CorruptionAssets,
} from './imagenet-c/index.js';

/**
 * What an image is studied under: as it is, one of ImageNet-C's corruptions at a severity, or
 * additive Gaussian noise of standard deviation `severity` in pixel units (the Predify paper's
 * first experiment, eval --gaussian-sweep).
 */
export type Condition =
  | { corruption: 'clean'; severity: 0 }
  | { corruption: Corruption; severity: number }
  | { corruption: typeof ADDITIVE_GAUSSIAN; severity: number };

export const ADDITIVE_GAUSSIAN = 'additive_gaussian';

export const CLEAN: Condition = { corruption: 'clean', severity: 0 };

export const conditionName = (c: Condition) =>
  c.corruption === 'clean' ? 'clean' : `${c.corruption}/${c.severity}`;

/** An image decoded once for every condition it is studied under. */
export interface OpenImage {
  image: StudyImage;
  /** the model input of the image as it is */
  clean: Float32Array;
  /** the file as read, for the corruptions (decoded again without the model's colour step) */
  bytes?: Buffer;
  /** sRGB (or grey) pixels at the model's size, decoded when a corruption first needs them */
  pixels?: RawPixels;
}

export interface StudyInputOptions {
  /** go on past images that cannot be decoded, listing them (else the study stops) */
  skipUnreadable?: boolean;
  /** varies every random corruption; the same seed gives the same study */
  seed?: number;
}

export class StudyInputs {
  readonly unreadable: { id: string; reason: string }[] = [];
  #assets: Promise<CorruptionAssets> | undefined;

  constructor(
    readonly spec: InputSpec,
    readonly options: StudyInputOptions = {},
  ) {}

  /** The image decoded, or undefined where it cannot be and --skip-unreadable is given. */
  async open(image: StudyImage): Promise<OpenImage | undefined> {
    const { source } = image;
    if ('pixels' in source) {
      if (
        source.width === this.spec.width &&
        source.height === this.spec.height &&
        this.spec.channels === 1
      ) {
        const pixels = { width: source.width, height: source.height, channels: 1, data: source.pixels };
        return { image, clean: normalise(source.pixels, 1, this.spec), pixels };
      }
      throw new ImageSetError(
        `${image.id}: Fashion-MNIST's 28 x 28 grey images suit only a model that takes them; this one takes ${this.spec.width} x ${this.spec.height} x ${this.spec.channels}`,
      );
    }
    try {
      const bytes = await readFile(source.file);
      return { image, bytes, clean: (await preprocess(bytes, this.spec)).tensor };
    } catch (err) {
      const reason = err instanceof ServiceError ? err.message : (err as Error).message.split('\n')[0]!;
      if (!this.options.skipUnreadable)
        throw new ImageSetError(`${source.file}: ${reason} (--skip-unreadable goes on past such images)`);
      this.unreadable.push({ id: image.id, reason });
      return undefined;
    }
  }

  /** The model inputs for open images under a condition. */
  async inputs(opened: readonly OpenImage[], condition: Condition): Promise<Float32Array[]> {
    if (condition.corruption === 'clean') return opened.map((o) => o.clean);
    if (condition.corruption === ADDITIVE_GAUSSIAN) {
      const noisy = await Promise.all(
        opened.map(async (o) => {
          o.pixels ??= (await decodeAtModelSize(o.bytes!, this.spec, 'rgb')).pixels;
          // one draw per image, sigma and study seed; sigma in thousandths names the draw
          const seed = corruptionSeed(
            'gaussian_noise',
            Math.round(condition.severity * 1000),
            o.image.id,
            this.options.seed ?? 0,
          );
          return addGaussianNoise(o.pixels, condition.severity, seed, this.spec.channels === 1);
        }),
      );
      return modelInputsFromRgb(noisy, this.spec);
    }
    const assets = await (this.#assets ??= loadCorruptionAssets());
    const corrupted = await Promise.all(
      opened.map(async (o) => {
        o.pixels ??= (await decodeAtModelSize(o.bytes!, this.spec, 'rgb')).pixels;
        const seed = corruptionSeed(
          condition.corruption,
          condition.severity,
          o.image.id,
          this.options.seed ?? 0,
        );
        return corruptPixels(o.pixels, condition.corruption, condition.severity, seed, assets);
      }),
    );
    return modelInputsFromRgb(corrupted, this.spec);
  }
}
