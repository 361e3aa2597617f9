/**
 * Runs jobs one at a time, in arrival order. onnxruntime-node computes on the calling thread,
 * so interleaving two requests' timesteps would only make both slower; the queue also gives
 * each request an honest queue-wait figure.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0;

  get pending(): number {
    return this.#pending;
  }

  run<T>(job: () => Promise<T>): Promise<{ value: T; waitedMs: number }> {
    const queuedAt = performance.now();
    this.#pending++;
    const result = this.#tail.then(async () => {
      const waitedMs = performance.now() - queuedAt;
      try {
        return { value: await job(), waitedMs };
      } finally {
        this.#pending--;
      }
    });
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
