/**
 * The repository API's work (MODEL_CONTROL=explicit): what MODEL_DIR holds, and loading,
 * reloading and unloading its models while the server serves. A load opens the new engine
 * beside the running ones; only once it is ready does the model's name point at it, and the
 * engine it replaces finishes the classifications it has before it closes. Requests never see
 * a model half loaded, and a load that fails leaves the model served before, if any, serving.
 * One operation runs at a time.
 */
import path from 'node:path';
import type { Config } from './config/config.js';
import { engineSettings } from './config/config.js';
import { errors } from './errors.js';
import { graphSetFor } from './engine/inference-engine.js';
import { checkBudget, modelDirectories, readEntry, type ModelEntry } from './model/repository.js';
import { openClassifier, type OpenOptions } from './open-models.js';
import type { ModelSet } from './engine/model-set.js';

/** What the repository API reads of the service's state (service-state.ts holds the whole). */
export interface ControlledState {
  models?: ModelSet;
  closing?: boolean;
}

/** A model of the repository as Triton's index lists it. */
export interface IndexEntry {
  name: string;
  version?: string;
  state: 'READY' | 'LOADING' | 'UNAVAILABLE';
  reason?: string;
}

export class ModelControl {
  readonly #config: Config;
  readonly #state: ControlledState;
  readonly #open: Omit<OpenOptions, 'model'>;
  /** the entries of the models served, for the memory budget */
  readonly #served = new Map<string, ModelEntry>();
  #loading: string | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(config: Config, state: ControlledState, open: Omit<OpenOptions, 'model'>) {
    this.#config = config;
    this.#state = state;
    this.#open = open;
  }

  get #which() {
    return graphSetFor(engineSettings(this.#config));
  }

  /** Records what the start-up loaded (their sizes count against the budget of later loads). */
  async adoptServed(): Promise<void> {
    for (const dir of await modelDirectories(this.#config.MODEL_DIR).catch(() => [])) {
      const entry = await readEntry(dir, this.#which).catch(() => undefined);
      if (entry && this.#state.models?.has(entry.manifest.name)) this.#served.set(entry.manifest.name, entry);
    }
  }

  /** Every model directory of MODEL_DIR, and every model served, with its state. */
  async index(readyOnly = false): Promise<IndexEntry[]> {
    const listed = new Map<string, IndexEntry>();
    for (const dir of await modelDirectories(this.#config.MODEL_DIR)) {
      try {
        const { manifest } = await readEntry(dir, this.#which);
        listed.set(manifest.name, this.#entry(manifest.name, manifest.modelVersion));
      } catch (err) {
        const name = path.basename(dir);
        listed.set(name, { name, state: 'UNAVAILABLE', reason: (err as Error).message });
      }
    }
    for (const c of this.#state.models?.all ?? [])
      if (!listed.has(c.name)) listed.set(c.name, this.#entry(c.name, c.manifest.modelVersion));
    const all = [...listed.values()].sort((a, b) => a.name.localeCompare(b.name));
    return readyOnly ? all.filter((e) => e.state === 'READY') : all;
  }

  #entry(name: string, version: string): IndexEntry {
    if (this.#loading === name) return { name, version, state: 'LOADING' };
    const served = this.#state.models?.has(name) ? this.#state.models.get(name) : undefined;
    if (!served) return { name, version, state: 'UNAVAILABLE', reason: 'unloaded' };
    // The version served, which may differ from the directory's until it is reloaded.
    const v = served.manifest.modelVersion;
    if (served.status !== 'ready') return { name, version: v, state: 'UNAVAILABLE', reason: served.status };
    return { name, version: v, state: 'READY' };
  }

  /** Loads `name` from MODEL_DIR, or reloads it from its directory as it is now. */
  load(name: string): Promise<void> {
    return this.#serially(() => this.#load(name));
  }

  /** Stops serving `name` once its classifications in flight are answered. */
  unload(name: string): Promise<void> {
    return this.#serially(async () => {
      const models = this.#models();
      const old = models.remove(name);
      this.#served.delete(name);
      this.#open.logger.info({ model: name }, `unloading ${name}`);
      await old.retire(errors.unknownModel(name, models.names), this.#graceMs());
    });
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #models() {
    if (!this.#state.models || this.#state.closing) throw errors.notReady();
    return this.#state.models;
  }

  #graceMs() {
    return this.#config.REQUEST_TIMEOUT_MS > 0
      ? this.#config.REQUEST_TIMEOUT_MS
      : this.#config.SHUTDOWN_DRAIN_MS;
  }

  async #load(name: string): Promise<void> {
    const models = this.#models();
    const entry = await this.#find(name);
    const failed = (err: unknown) =>
      errors.modelLoadFailed(name, err instanceof Error ? err.message : String(err));
    // Old and new are both in memory until the switch: the budget counts both.
    const ownProcess = this.#config.ENGINE_WORKER && this.#config.ENGINE_ISOLATION === 'process';
    try {
      checkBudget([...this.#served.values(), entry], this.#config.MODEL_MEMORY_BUDGET_MB, ownProcess);
    } catch (err) {
      throw failed(err);
    }
    this.#loading = name;
    const started = performance.now();
    let opened;
    try {
      opened = await openClassifier(this.#config, entry.dir, this.#open);
    } catch (err) {
      this.#open.logger.warn(
        { model: name, err },
        `loading ${name} failed: the model served before still is`,
      );
      throw failed(err);
    } finally {
      this.#loading = undefined;
    }
    if (this.#state.closing) {
      await opened.classifier.close();
      throw errors.notReady();
    }
    const old = models.put(opened.classifier);
    this.#served.set(name, entry);
    this.#open.logger.info(
      { model: name, version: entry.manifest.modelVersion, ms: Math.round(performance.now() - started) },
      `${old ? 'reloaded' : 'loaded'} ${name}`,
    );
    // In the background: the load is done when the new engine serves.
    if (old)
      void old
        .retire(opened.classifier, this.#graceMs())
        .catch((err: unknown) =>
          this.#open.logger.warn({ model: name, err }, 'closing the replaced engine failed'),
        );
  }

  /** The directory of MODEL_DIR whose manifest is named `name`. */
  async #find(name: string): Promise<ModelEntry> {
    let problem: Error | undefined;
    for (const dir of await modelDirectories(this.#config.MODEL_DIR)) {
      try {
        const entry = await readEntry(dir, this.#which);
        if (entry.manifest.name === name) return entry;
      } catch (err) {
        // A directory named like the model whose manifest does not read is why it cannot load.
        if (path.basename(dir) === name) problem = err as Error;
      }
    }
    if (problem) throw errors.modelLoadFailed(name, problem.message);
    throw errors.noSuchModelDirectory(name, this.#config.MODEL_DIR);
  }
}
