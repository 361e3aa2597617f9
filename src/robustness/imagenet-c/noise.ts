/** The four noises of ImageNet-C, on RGB pixels in 0..255; parameters are the reference's. */
import { clip01, map, type Raster } from './raster.js';
import type { Random } from './random.js';

const at = <T>(values: readonly T[], severity: number) => values[severity - 1]!;

/** additive N(0, sigma^2) on [0, 1] pixels */
export function gaussianNoise(x: Raster, severity: number, rng: Random): Raster {
  return additiveGaussian(x, at([0.08, 0.12, 0.18, 0.26, 0.38], severity), rng);
}

/** x + N(0, sigma^2) in [0, 1] pixel units, clipped: ImageNet-C's gaussian_noise at any sigma. */
export function additiveGaussian(x: Raster, sigma: number, rng: Random): Raster {
  return map(x, (v) => clip01(v / 255 + sigma * rng.normal()) * 255);
}

/** Poisson(x * photons) / photons: fewer photons, more noise */
export function shotNoise(x: Raster, severity: number, rng: Random): Raster {
  const photons = at([60, 25, 12, 5, 3], severity);
  return map(x, (v) => clip01(rng.poisson((v / 255) * photons) / photons) * 255);
}

/** salt and pepper: each value, channel by channel, set to 0 or 1 with this probability */
export function impulseNoise(x: Raster, severity: number, rng: Random): Raster {
  const amount = at([0.03, 0.06, 0.09, 0.17, 0.27], severity);
  return map(x, (v) => {
    const flipped = rng.next() < amount;
    const salt = rng.next() < 0.5;
    return flipped ? (salt ? 255 : 0) : v;
  });
}

/** multiplicative: x + x * N(0, sigma^2) */
export function speckleNoise(x: Raster, severity: number, rng: Random): Raster {
  const sigma = at([0.15, 0.2, 0.35, 0.45, 0.6], severity);
  return map(x, (v) => clip01(v / 255 + (v / 255) * sigma * rng.normal()) * 255);
}
