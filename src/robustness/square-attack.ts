/**
 * A score-based black-box attack (Square Attack, L-infinity: Andriushchenko et al., 2020) that
 * sees only what an API answers, in 8-bit pixels as a client uploads them. Random square
 * windows are set to +-epsilon per channel; a candidate is kept when it lowers the attacker's
 * loss. Two attackers differ only in what they read from each answer:
 *
 * - `final`: the final answer's probabilities; the loss is the margin
 *   ln p(label) - max over other classes of ln p(class), as Square Attack's own.
 * - `timesteps`: every timestep's probabilities the answer holds; the loss is the mean of each
 *   timestep's margin, which moves where the final margin alone says little.
 *
 * Success is the final answer's class differing from the label, in both.
 */
import { Random } from './imagenet-c/random.js';

export type AttackerView = 'final' | 'timesteps';
export const ATTACKER_VIEWS: readonly AttackerView[] = ['final', 'timesteps'];

/** One answer of the API: each returned timestep's probabilities of every class, the last final. */
export interface ApiAnswer {
  steps: Float64Array[];
}

export type Query = (pixels: Uint8Array) => Promise<ApiAnswer>;

export interface SquareOptions {
  /** in 8-bit levels: the largest change of any pixel */
  epsilon: number;
  /** queries at most, the first (the stripes it starts from) included */
  budget: number;
  /** the fraction of pixels a window covers at first (Square Attack's p_init) */
  pInit: number;
  seed: number;
  view: AttackerView;
}

export interface SquareResult {
  /** queries until the final answer was wrong; undefined when the budget ran out first */
  queries: number | undefined;
  /** queries made */
  spent: number;
  adversarial: Uint8Array;
}

const margin = (probabilities: Float64Array, label: number) => {
  const ln = (p: number) => Math.log(Math.max(p, 1e-30));
  let other = -Infinity;
  probabilities.forEach((p, k) => {
    if (k !== label) other = Math.max(other, ln(p));
  });
  return ln(probabilities[label]!) - other;
};

const top = (probabilities: Float64Array) => {
  let best = 0;
  probabilities.forEach((p, k) => {
    if (p > probabilities[best]!) best = k;
  });
  return best;
};

/** What the attacker minimises, from what it sees of an answer. */
export function attackerLoss(answer: ApiAnswer, label: number, view: AttackerView): number {
  if (view === 'final') return margin(answer.steps.at(-1)!, label);
  return answer.steps.reduce((s, p) => s + margin(p, label), 0) / answer.steps.length;
}

/** Square Attack's schedule of the window's share of the image, by iteration (for 10 000). */
function windowShare(pInit: number, iteration: number): number {
  const halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000].filter((at) => iteration > at).length;
  return pInit / 2 ** halvings;
}

/**
 * Attacks one image, `pixels` (height x width x channels, 8-bit, at the model's size), whose
 * right class is `label`: returns the queries it took to make the final answer wrong.
 */
export async function squareAttack(
  pixels: Uint8Array,
  shape: { height: number; width: number; channels: number },
  label: number,
  query: Query,
  o: SquareOptions,
): Promise<SquareResult> {
  const { height: h, width: w, channels: c } = shape;
  const rng = new Random(o.seed);
  const sign = () => (rng.next() < 0.5 ? -1 : 1);
  const clip = (v: number) => Math.min(255, Math.max(0, v));
  const delta = new Int16Array(pixels.length);
  // Vertical stripes: one sign per column and channel, as Square Attack starts.
  for (let x = 0; x < w; x++)
    for (let ch = 0; ch < c; ch++) {
      const s = sign() * o.epsilon;
      for (let y = 0; y < h; y++) delta[(y * w + x) * c + ch] = s;
    }
  const apply = (d: Int16Array) => Uint8Array.from(pixels, (v, k) => clip(v + d[k]!));
  let best = apply(delta);
  const answer = await query(best);
  let spent = 1;
  let loss = attackerLoss(answer, label, o.view);
  if (top(answer.steps.at(-1)!) !== label) return { queries: spent, spent, adversarial: best };
  for (let i = 1; spent < o.budget; i++) {
    const side = Math.max(1, Math.min(h, w, Math.round(Math.sqrt(windowShare(o.pInit, i) * h * w))));
    const y0 = rng.int(0, h - side + 1);
    const x0 = rng.int(0, w - side + 1);
    const candidate = Int16Array.from(delta);
    // A window whose new signs would change nothing is drawn again (as the reference does).
    for (let tries = 0; tries < 10; tries++) {
      const signs = Array.from({ length: c }, () => sign() * o.epsilon);
      let changes = false;
      for (let y = y0; y < y0 + side; y++)
        for (let x = x0; x < x0 + side; x++)
          for (let ch = 0; ch < c; ch++) {
            const k = (y * w + x) * c + ch;
            candidate[k] = signs[ch]!;
            if (clip(pixels[k]! + signs[ch]!) !== best[k]) changes = true;
          }
      if (changes) break;
    }
    const next = apply(candidate);
    const got = await query(next);
    spent++;
    const l = attackerLoss(got, label, o.view);
    if (top(got.steps.at(-1)!) !== label) return { queries: spent, spent, adversarial: next };
    if (l < loss) {
      loss = l;
      delta.set(candidate);
      best = next;
    }
  }
  return { queries: undefined, spent, adversarial: best };
}
