/**
 * A small seedable generator (mulberry32) with the draws the corruptions need. The reference
 * draws from numpy's global generator; ours cannot give the same numbers, so the random
 * corruptions are held to the reference's statistics instead (test/robustness/imagenet-c).
 */
export class Random {
  #state: number;
  #spare: number | undefined;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** uniform in [0, 1) */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  uniform(low: number, high: number): number {
    return low + (high - low) * this.next();
  }

  /** an integer in [low, high), as numpy's randint */
  int(low: number, high: number): number {
    return low + Math.floor(this.next() * (high - low));
  }

  /** standard normal (Box-Muller, both values used) */
  normal(): number {
    if (this.#spare !== undefined) {
      const s = this.#spare;
      this.#spare = undefined;
      return s;
    }
    const u = 1 - this.next();
    const v = this.next();
    const radius = Math.sqrt(-2 * Math.log(u));
    this.#spare = radius * Math.sin(2 * Math.PI * v);
    return radius * Math.cos(2 * Math.PI * v);
  }

  /** Poisson(mean): Knuth's method, exact; the corruptions' means stay under 100 */
  poisson(mean: number): number {
    if (mean <= 0) return 0;
    const limit = Math.exp(-mean);
    let k = 0;
    let p = this.next();
    while (p > limit) {
      k++;
      p *= this.next();
    }
    return k;
  }
}

/**
 * A seed for one (corruption, severity, image): an image gets the same corruption whatever
 * else is corrupted with it and in whatever order. FNV-1a over the three, mixed with `base`.
 */
export function corruptionSeed(
  corruption: string,
  severity: number,
  image: number | string,
  base = 0,
): number {
  let h = 2166136261 ^ base;
  for (const ch of `${corruption}/${severity}/${image}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return h >>> 0;
}
