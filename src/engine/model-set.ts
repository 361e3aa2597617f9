/** The models a server serves, by name, and which one a request that names none gets. */
import { errors } from '../errors.js';
import type { Classifier } from './classifier.js';

export class ModelSet {
  readonly #byName: ReadonlyMap<string, Classifier>;
  readonly default: Classifier;

  constructor(classifiers: readonly Classifier[], defaultName?: string) {
    this.#byName = new Map(classifiers.map((c) => [c.name, c]));
    const chosen = defaultName === undefined ? classifiers[0] : this.#byName.get(defaultName);
    if (!chosen) throw errors.unknownModel(defaultName ?? '(none)', this.names);
    this.default = chosen;
  }

  get names(): string[] {
    return [...this.#byName.keys()];
  }

  get all(): Classifier[] {
    return [...this.#byName.values()];
  }

  /** The model called `name`, or the default one; an unknown name is a 404 naming the others. */
  get(name?: string): Classifier {
    if (name === undefined) return this.default;
    const found = this.#byName.get(name);
    if (!found) throw errors.unknownModel(name, this.names);
    return found;
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((c) => c.close()));
  }
}
