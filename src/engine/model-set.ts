/**
 * The models a server serves, by name, and which one a request that names none gets. The set
 * changes only through the repository API (src/model-control.ts): a model loaded, replaced by
 * its reload, or unloaded.
 */
import { errors } from '../errors.js';
import type { Classifier } from './classifier.js';

export class ModelSet {
  readonly #byName: Map<string, Classifier>;
  /** DEFAULT_MODEL, when set: the default whenever that model is loaded */
  readonly #defaultName: string | undefined;

  constructor(classifiers: readonly Classifier[], defaultName?: string) {
    this.#byName = new Map(classifiers.map((c) => [c.name, c]));
    if (defaultName !== undefined && !this.#byName.has(defaultName))
      throw errors.unknownModel(defaultName, this.names);
    if (classifiers.length === 0) throw errors.unknownModel('(none)', []);
    this.#defaultName = defaultName;
  }

  /** DEFAULT_MODEL, or the first model loaded while it is not */
  get default(): Classifier {
    const chosen = this.#defaultName === undefined ? undefined : this.#byName.get(this.#defaultName);
    return chosen ?? this.#byName.values().next().value!;
  }

  get names(): string[] {
    return [...this.#byName.keys()];
  }

  get all(): Classifier[] {
    return [...this.#byName.values()];
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** The model called `name`, or the default one; an unknown name is a 404 naming the others. */
  get(name?: string): Classifier {
    if (name === undefined) return this.default;
    const found = this.#byName.get(name);
    if (!found) throw errors.unknownModel(name, this.names);
    return found;
  }

  /** Serves `classifier` under its name from now on; returns the one it replaces, if any. */
  put(classifier: Classifier): Classifier | undefined {
    const before = this.#byName.get(classifier.name);
    this.#byName.set(classifier.name, classifier);
    return before;
  }

  /** Stops serving `name` (never the last model: a server always has a default). */
  remove(name: string): Classifier {
    const found = this.get(name);
    if (this.#byName.size === 1) throw errors.lastModel(name);
    this.#byName.delete(name);
    return found;
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((c) => c.close()));
  }
}
