/**
 * The black-box comparison: Square Attack through a server's HTTP API, once by an attacker that
 * reads only the final answer and once by one that reads every timestep, on the same images with
 * the same random draws. Reported: the queries each needed for 50% success (the median over
 * images, an image never fooled counting as beyond the budget) and the success rate at the
 * budget, each with a 95% bootstrap interval over images, and the paired differences.
 */
import { pixelsToPng } from '../image/codecs.js';
import type { Manifest } from '../model/manifest.js';
import { ImageSetError } from './image-set.js';
import { Random } from './imagenet-c/random.js';
import { quantileSorted } from './mce.js';
import {
  squareAttack,
  type ApiAnswer,
  type AttackerView,
  type Query,
  type SquareOptions,
} from './square-attack.js';

/**
 * `text` as a URL on this machine's loopback (127.0.0.0/8, ::1, localhost), or an ImageSetError:
 * the attack sends its traffic nowhere else.
 */
export function loopbackUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ImageSetError(`--server ${text}: not a URL (http://127.0.0.1:8080)`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ImageSetError(`--server ${text}: http or https only`);
  if (!(host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)))
    throw new ImageSetError(
      `--server ${text}: the attack sends traffic only to a server on loopback (127.0.0.0/8, ::1, localhost)`,
    );
  return url;
}

/**
 * What POST /classify answers for an image, as the attacker reads it: each returned timestep's
 * probability of every class (topk = all classes). `timesteps` is what each query asks: a
 * number, auto, or default (none named: the served default).
 */
export function httpQuery(
  url: URL,
  manifest: Manifest,
  { timesteps, apiKey }: { timesteps: string; apiKey?: string | undefined },
): Query {
  const { width, height, channels } = manifest.input;
  const classes = manifest.labels.length;
  const params = new URLSearchParams({ topk: String(classes) });
  if (timesteps !== 'default') params.set('timesteps', timesteps);
  const target = new URL(`/classify?${params}`, url);
  return async (pixels) => {
    const png = await pixelsToPng(pixels, width, height, channels as 1 | 3);
    const res = await fetch(target, {
      method: 'POST',
      headers: { 'content-type': 'image/png', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
      body: new Uint8Array(png),
    });
    if (!res.ok)
      throw new ImageSetError(`the server answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    const body = (await res.json()) as { steps: { topk: { index: number; probability: number }[] }[] };
    const answer: ApiAnswer = {
      steps: body.steps.map((s) => {
        const p = new Float64Array(classes);
        for (const e of s.topk) p[e.index] = e.probability;
        return p;
      }),
    };
    return answer;
  };
}

export interface BlackboxImage {
  id: string;
  label: number;
  /** 8-bit pixels at the model's size, height x width x channels */
  pixels: Uint8Array;
}

export interface BlackboxOptions {
  images: readonly BlackboxImage[];
  shape: { height: number; width: number; channels: number };
  views: readonly AttackerView[];
  square: Omit<SquareOptions, 'view' | 'seed'>;
  seed: number;
  /** images attacked at once (the server batches their queries) */
  concurrency: number;
  /** what the server answers for an image, read as `view` needs */
  query: Query;
  onProgress?: (line: string) => void;
}

/** A median of queries (Infinity: not reached within the budget) with its 95% interval. */
export interface QueryEstimate {
  median: number | null;
  interval95: [number | null, number | null];
}

const finite = (x: number) => (Number.isFinite(x) ? x : null);

/** The median and its percentile bootstrap interval; `draws` gives each replicate's indices. */
function median(xs: number[]): number {
  const s = xs.sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

function medianWithInterval(values: readonly number[], draws: readonly Uint32Array[]): QueryEstimate {
  const reps = draws.map((d) => median(Array.from(d, (i) => values[i]!))).sort((a, b) => a - b);
  return {
    median: finite(median([...values])),
    interval95: [finite(quantileSorted(reps, 0.025)), finite(quantileSorted(reps, 0.975))],
  };
}

function meanWithInterval(values: readonly number[], draws: readonly Uint32Array[]) {
  const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const reps = draws.map((d) => mean(Array.from(d, (i) => values[i]!))).sort((a, b) => a - b);
  const r4 = (x: number) => Math.round(x * 10000) / 10000;
  return {
    value: r4(mean(values)),
    interval95: [r4(quantileSorted(reps, 0.025)), r4(quantileSorted(reps, 0.975))] as [number, number],
  };
}

export async function blackboxStudy(o: BlackboxOptions) {
  // Images the server already gets wrong need no attack: counted, left out of the statistics.
  const perView = new Map<AttackerView, (number | undefined)[]>();
  const wrongFromStart: string[] = [];
  const firstAnswers = await Promise.all(o.images.map((im) => o.query(im.pixels)));
  const attacked = o.images.filter((im, k) => {
    const last = firstAnswers[k]!.steps.at(-1)!;
    let top = 0;
    last.forEach((p, c) => {
      if (p > last[top]!) top = c;
    });
    if (top !== im.label) wrongFromStart.push(im.id);
    return top === im.label;
  });
  let queries = o.images.length;
  for (const view of o.views) {
    const results: (number | undefined)[] = new Array<number | undefined>(attacked.length);
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < attacked.length) {
        const k = next++;
        const im = attacked[k]!;
        // The same draws for every view: the attackers differ only in what they read.
        const r = await squareAttack(im.pixels, o.shape, im.label, o.query, {
          ...o.square,
          view,
          seed: o.seed * 100_003 + k,
        });
        results[k] = r.queries;
        queries += r.spent;
        done++;
        if (done % 10 === 0 || done === attacked.length)
          o.onProgress?.(`${view}: ${done}/${attacked.length} images`);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, worker));
    perView.set(view, results);
  }
  const n = attacked.length;
  const rng = new Random(o.seed + 2);
  const draws = Array.from({ length: n ? 1000 : 0 }, () => {
    const d = new Uint32Array(n);
    for (let i = 0; i < n; i++) d[i] = rng.int(0, n);
    return d;
  });
  const asNumber = (q: number | undefined) => q ?? Infinity;
  const views = Object.fromEntries(
    [...perView].map(([view, results]) => [
      view,
      {
        queriesFor50: medianWithInterval(results.map(asNumber), draws),
        successAtBudget: meanWithInterval(
          results.map((q) => (q === undefined ? 0 : 1)),
          draws,
        ),
        meanQueriesOfSuccesses: (() => {
          const ok = results.filter((q): q is number => q !== undefined);
          return ok.length ? Math.round(ok.reduce((s, q) => s + q, 0) / ok.length) : null;
        })(),
        perImage: results.map((q) => q ?? null),
      },
    ]),
  );
  const [a, b] = o.views;
  let paired;
  if (a && b && n) {
    const qa = perView.get(a)!.map(asNumber);
    const qb = perView.get(b)!.map(asNumber);
    const diffs = draws
      .map((d) => median(Array.from(d, (i) => qb[i]!)) - median(Array.from(d, (i) => qa[i]!)))
      .filter(Number.isFinite)
      .sort((x, y) => x - y);
    const successDiff = qa.map((x, i) => (Number.isFinite(qb[i]!) ? 1 : 0) - (Number.isFinite(x) ? 1 : 0));
    paired = {
      of: `${b} less ${a}`,
      queriesFor50: {
        change: (() => {
          const [ma, mb] = [views[a]!.queriesFor50.median, views[b]!.queriesFor50.median];
          return ma === null || mb === null ? null : mb - ma;
        })(),
        interval95:
          diffs.length > draws.length * 0.95
            ? [quantileSorted(diffs, 0.025), quantileSorted(diffs, 0.975)]
            : null,
      },
      successAtBudget: meanWithInterval(successDiff, draws),
      fewerQueries: qa.filter((x, i) => qb[i]! < x).length,
      moreQueries: qa.filter((x, i) => qb[i]! > x).length,
    };
  }
  return {
    images: o.images.length,
    attacked: n,
    wrongFromStart,
    settings: { ...o.square, seed: o.seed, concurrency: o.concurrency },
    views,
    ...(paired ? { paired } : {}),
    queries,
  };
}

export type BlackboxReport = Awaited<ReturnType<typeof blackboxStudy>>;
