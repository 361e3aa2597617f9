/**
 * Servers of one model, used together by a study: each image (already corrupted, on this side)
 * goes to whichever server is free, over the Open Inference Protocol's REST form with binary
 * tensor data (FP32 pixels in, exact logits and PCoder errors out). REST rather than gRPC: a
 * Kubernetes Service balances connections, and HTTP/1.1 keeps several, so one URL in front of
 * many replicas spreads; one gRPC channel is one HTTP/2 connection to one replica. The bytes
 * and the server's CPU per image are the same (BENCHMARKS.md, section 9).
 *
 * Each server has a few requests in flight and takes the next work when one returns, so a
 * slow or busy one gets less. Only an answer counts: a 503 (its Retry-After honoured), a
 * refused connection, a timeout or a 5xx puts the work back for any server; a server that
 * keeps failing is set aside, tried again later, and its identity checked again before it
 * gets work. A server answering for another model version stops the study.
 */
import { readStep, type StepReading } from '../engine/settling.js';

export interface ModelIdentity {
  name: string;
  version: string;
  hash: string;
}

export class FleetError extends Error {}

/** What one server answered for one image: each timestep's reading. */
export type Answer = StepReading[];

export interface FleetOptions {
  urls: readonly string[];
  identity: ModelIdentity;
  apiKey?: string;
  timesteps: number;
  profile: string;
  /** the model's input, [C, H, W] */
  inputShape: readonly number[];
  /** requests in flight per URL */
  concurrency: number;
  /** how long a request may take before it is given up and its work put back */
  timeoutMs: number;
  /** stop when no server has answered for this long (the journal keeps what was done) */
  giveUpMs: number;
}

interface Endpoint {
  url: string;
  answered: number;
  busyMs: number;
  retries: number;
  failuresInARow: number;
  /** no work before this time (Retry-After, backoff, set aside) */
  pausedUntil: number;
  setAside: boolean;
  timesSetAside: number;
  /** its identity must be checked before it gets work */
  unchecked: boolean;
  /** the check under way, which the server's other request slots wait for */
  checking: Promise<void> | undefined;
}

export interface EndpointStats {
  url: string;
  answered: number;
  imagesPerSecond: number;
  retries: number;
  setAside: boolean;
}

/** A request's work: images of one condition, already the model's input. */
export interface WorkItem<T> {
  tensors: readonly Float32Array[];
  tag: T;
}

/** Failures in a row that set a server aside, and how long it then rests (doubling, capped). */
const SET_ASIDE_AFTER = 3;
const REST_MS = 2000;
const MAX_REST_MS = 60_000;

export class Fleet<T> {
  readonly #o: FleetOptions;
  readonly #endpoints: Endpoint[];
  readonly #queue: WorkItem<T>[] = [];
  #pending = 0;
  #failure: Error | undefined;
  #lastAnswer = Date.now();
  #wake: (() => void)[] = [];
  readonly #started = performance.now();

  constructor(options: FleetOptions) {
    this.#o = options;
    this.#endpoints = options.urls.map((url) => ({
      url: url.replace(/\/+$/, ''),
      answered: 0,
      busyMs: 0,
      retries: 0,
      failuresInARow: 0,
      pausedUntil: 0,
      setAside: false,
      timesSetAside: 0,
      unchecked: true,
      checking: undefined,
    }));
  }

  /** Checks every server's model before any work: one serving another version stops the study. */
  async checkAll(): Promise<void> {
    const reached = await Promise.all(
      this.#endpoints.map((e) =>
        this.#check(e).then(
          () => true,
          () => false,
        ),
      ),
    );
    if (this.#failure) throw this.#failure;
    if (!reached.some(Boolean))
      throw new FleetError(`no server answered: ${this.#endpoints.map((e) => e.url).join(', ')}`);
  }

  get stats(): EndpointStats[] {
    const seconds = (performance.now() - this.#started) / 1000;
    return this.#endpoints.map((e) => ({
      url: e.url,
      answered: e.answered,
      imagesPerSecond: e.answered / Math.max(seconds, 1e-9),
      retries: e.retries,
      setAside: e.setAside,
    }));
  }

  /**
   * Runs `work` items as servers free up, calling `onAnswer` with each item's answers (one per
   * tensor, in order) as they come; resolves when every item has an answer. `more` is asked for
   * items while fewer than `ahead` wait, so that the images are corrupted as they are needed.
   */
  async run(
    more: () => Promise<WorkItem<T>[] | undefined>,
    onAnswer: (item: WorkItem<T>, answers: Answer[], by: string) => void,
  ): Promise<void> {
    const ahead = this.#endpoints.length * this.#o.concurrency * 2;
    let exhausted = false;
    // One filler at a time: `more` is called by one caller after the other.
    let filling: Promise<void> | undefined;
    const fill = () =>
      (filling ??= (async () => {
        while (!exhausted && this.#queue.length < ahead) {
          const items = await more();
          if (!items) exhausted = true;
          else {
            this.#queue.push(...items);
            this.#pending += items.length;
            this.#notify();
          }
        }
      })().finally(() => (filling = undefined)));
    await fill();
    const slot = async (endpoint: Endpoint) => {
      for (;;) {
        if (this.#failure) return;
        if (this.#pending === 0 && exhausted) return;
        if (Date.now() - this.#lastAnswer > this.#o.giveUpMs) {
          this.#failure ??= new FleetError(
            `no server answered for ${Math.round(this.#o.giveUpMs / 1000)} s: stopping (run again with --resume to go on)`,
          );
          this.#notify();
          return;
        }
        const wait = endpoint.pausedUntil - Date.now();
        if (wait > 0) {
          await this.#sleep(Math.min(wait, 1000));
          continue;
        }
        if (endpoint.unchecked) {
          // One check for the server, whichever of its slots comes first; a failed one sets it
          // aside again, once.
          endpoint.checking ??= this.#check(endpoint)
            .catch(() => {
              if (!this.#failure) this.#setAside(endpoint);
            })
            .finally(() => (endpoint.checking = undefined));
          await endpoint.checking;
          if (this.#failure) return;
          continue;
        }
        const item = this.#queue.shift();
        if (!item) {
          await this.#waitForWork();
          continue;
        }
        void fill().catch((err: unknown) => (this.#failure ??= err as Error));
        const started = performance.now();
        try {
          const answers = await this.#infer(endpoint, item.tensors);
          endpoint.busyMs += performance.now() - started;
          endpoint.answered += item.tensors.length;
          endpoint.failuresInARow = 0;
          endpoint.timesSetAside = 0;
          this.#lastAnswer = Date.now();
          this.#pending--;
          onAnswer(item, answers, endpoint.url);
          this.#notify();
        } catch (err) {
          // Never lost: the work goes back, first in line, for any server.
          this.#queue.unshift(item);
          this.#notify();
          endpoint.retries++;
          if (err instanceof FleetError) {
            this.#failure ??= err;
            this.#notify();
            return;
          }
          // Busy: this request slot waits as told, the server's others go on (so its load
          // settles at what it takes). Broken: the server backs off, or is set aside.
          if (err instanceof Busy) await this.#sleep(err.retryAfterMs);
          else this.#failed(endpoint);
        }
      }
    };
    const slots = this.#endpoints.flatMap((e) => Array.from({ length: this.#o.concurrency }, () => slot(e)));
    await Promise.all(slots);
    if (this.#failure) throw this.#failure;
  }

  /** A failure that is not the server being busy: back off, and after a few, set it aside. */
  #failed(endpoint: Endpoint) {
    // The other requests it had in flight fail too: they do not set it aside again.
    if (endpoint.setAside) return;
    endpoint.failuresInARow++;
    if (endpoint.failuresInARow >= SET_ASIDE_AFTER) this.#setAside(endpoint);
    else endpoint.pausedUntil = Date.now() + 250 * 2 ** endpoint.failuresInARow;
  }

  /** No work for a rest that doubles each time (capped); then its model is checked again. */
  #setAside(endpoint: Endpoint) {
    endpoint.setAside = true;
    endpoint.unchecked = true;
    const rest = Math.min(MAX_REST_MS, REST_MS * 2 ** endpoint.timesSetAside++);
    endpoint.pausedUntil = Date.now() + rest;
  }

  async #check(endpoint: Endpoint): Promise<void> {
    const res = await fetch(`${endpoint.url}/v2/models/${encodeURIComponent(this.#o.identity.name)}`, {
      headers: this.#headers(),
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status === 404) return this.#mismatch(endpoint, `it does not serve ${this.#o.identity.name}`);
    if (res.status === 401) return this.#mismatch(endpoint, 'it refused the API key (set PREDIFY_API_KEY)');
    if (!res.ok) throw new Error(`${endpoint.url}: ${res.status}`);
    const meta = (await res.json()) as { versions?: string[]; parameters?: Record<string, unknown> };
    const version = meta.versions?.[0];
    const hash = meta.parameters?.['model_hash'];
    const want = this.#o.identity;
    if (version !== want.version || hash !== want.hash)
      return this.#mismatch(
        endpoint,
        `it serves ${want.name} version ${version} (hash ${String(hash).slice(0, 12)}), ` +
          `this study is for version ${want.version} (hash ${want.hash.slice(0, 12)})`,
      );
    endpoint.unchecked = false;
    endpoint.setAside = false;
    endpoint.failuresInARow = 0;
  }

  #mismatch(endpoint: Endpoint, why: string): never {
    const err = new FleetError(
      `${endpoint.url} cannot take part: ${why}. A fleet serving mixed versions would mix their answers: stopping`,
    );
    this.#failure ??= err;
    this.#notify();
    throw err;
  }

  #headers(): Record<string, string> {
    return this.#o.apiKey ? { authorization: `Bearer ${this.#o.apiKey}` } : {};
  }

  async #infer(endpoint: Endpoint, tensors: readonly Float32Array[]): Promise<Answer[]> {
    const size = tensors[0]!.length;
    const header = Buffer.from(
      JSON.stringify({
        parameters: { timesteps: this.#o.timesteps, profile: this.#o.profile },
        inputs: [
          {
            name: 'input',
            datatype: 'FP32',
            shape: [tensors.length, ...this.#o.inputShape],
            parameters: { binary_data_size: tensors.length * size * 4 },
          },
        ],
        outputs: [
          { name: 'logits', parameters: { binary_data: true } },
          { name: 'pcoder_errors', parameters: { binary_data: true } },
        ],
      }),
    );
    const pixels = Buffer.concat(tensors.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength)));
    const res = await fetch(`${endpoint.url}/v2/models/${encodeURIComponent(this.#o.identity.name)}/infer`, {
      method: 'POST',
      headers: {
        ...this.#headers(),
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(header.length),
      },
      body: Buffer.concat([header, pixels]),
      signal: AbortSignal.timeout(this.#o.timeoutMs),
    });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status === 503 || res.status === 429) {
      const after = Number(res.headers.get('retry-after'));
      throw new Busy(Number.isFinite(after) && after > 0 ? after * 1000 : 1000);
    }
    if (res.status >= 500) throw new Error(`${endpoint.url}: ${res.status}`);
    if (!res.ok) {
      // The server refuses the request itself: retrying elsewhere cannot help.
      const message = (() => {
        try {
          return (JSON.parse(body.toString('utf8')) as { error?: string }).error;
        } catch {
          return undefined;
        }
      })();
      const hint = /BATCH_MAX_SIZE/.test(message ?? '')
        ? ' (send fewer images a request: lower --batch)'
        : '';
      throw new FleetError(
        `${endpoint.url} refused a request (${res.status}): ${message ?? body.toString('utf8', 0, 200)}${hint}`,
      );
    }
    return readAnswers(body, Number(res.headers.get('inference-header-content-length')), tensors.length);
  }

  #notify() {
    for (const wake of this.#wake.splice(0)) wake();
  }

  #waitForWork(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 1000);
      this.#wake.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/** A 503 or 429: busy, not broken. */
class Busy extends Error {
  constructor(readonly retryAfterMs: number) {
    super('busy');
  }
}

/** The binary answer's logits and errors as each image's readings per timestep. */
function readAnswers(body: Buffer, headerLength: number, images: number): Answer[] {
  const header = JSON.parse(body.toString('utf8', 0, headerLength)) as {
    outputs: { name: string; shape: number[]; parameters?: { binary_data_size?: number } }[];
  };
  let at = headerLength;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const o of header.outputs) {
    const size = o.parameters?.binary_data_size ?? 0;
    const copy = new Float32Array(size / 4);
    new Uint8Array(copy.buffer).set(body.subarray(at, at + size));
    tensors.set(o.name, { shape: o.shape, data: copy });
    at += size;
  }
  const logits = tensors.get('logits');
  const errors = tensors.get('pcoder_errors');
  if (!logits || !errors || logits.shape[0] !== images)
    throw new Error('the answer lacks the logits or errors asked for');
  const [, steps, classes] = logits.shape as [number, number, number];
  const pcoders = errors.shape[2]!;
  return Array.from({ length: images }, (_, n) =>
    Array.from({ length: steps }, (_, t) =>
      readStep({
        logits: logits.data.subarray((n * steps + t) * classes, (n * steps + t + 1) * classes),
        errors: errors.data.slice((n * steps + t) * pcoders, (n * steps + t + 1) * pcoders),
      }),
    ),
  );
}
