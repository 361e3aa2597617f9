/**
 * Where the models are: MODEL_DIR is one model directory (it holds a manifest.json), or a
 * repository whose subdirectories are model directories. A repository serves all of them or
 * none: a subdirectory that is not a valid model stops the start-up, naming it.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { errors } from '../errors.js';
import { fileError } from './file-errors.js';
import { graphsToOpen, MANIFEST_FILE, readManifest, type GraphSet, type Manifest } from './manifest.js';

export interface ModelEntry {
  dir: string;
  manifest: Manifest;
  /** bytes of its graph files */
  graphBytes: number;
}

const exists = (file: string) =>
  stat(file).then(
    (s) => s.isFile(),
    () => false,
  );

/** The model directories under `modelDir`, in name order; one if it is a model itself. */
export async function modelDirectories(modelDir: string): Promise<string[]> {
  if (await exists(path.join(modelDir, MANIFEST_FILE))) return [modelDir];
  let entries;
  try {
    entries = await readdir(modelDir, { withFileTypes: true });
  } catch (err) {
    // A missing MODEL_DIR is reported as its missing manifest, the file a model directory needs.
    throw fileError(
      err,
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? path.join(modelDir, MANIFEST_FILE) : modelDir,
    );
  }
  // Symbolic links count as what they point to: a repository is often a set of links.
  const isDirectory = (file: string) =>
    stat(file).then(
      (s) => s.isDirectory(),
      () => false,
    );
  const dirs: string[] = [];
  for (const e of entries
    .filter((e) => !e.name.startsWith('.'))
    .sort((a, b) => a.name.localeCompare(b.name))) {
    const dir = path.join(modelDir, e.name);
    if (await isDirectory(dir)) dirs.push(dir);
  }
  if (dirs.length === 0)
    throw errors.repositoryInvalid(modelDir, `no ${MANIFEST_FILE} and no model directories in it`);
  return dirs;
}

/** One model directory's manifest and the size of the graphs it would open. */
export async function readEntry(dir: string, which: GraphSet = 'served'): Promise<ModelEntry> {
  const manifest = await readManifest(dir);
  let graphBytes = 0;
  for (const name of graphsToOpen(manifest, which)) {
    const spec = manifest.graphs[name]!;
    // Each session holds its own copy of shared weights: a data file counts once per graph.
    for (const file of [spec.file, ...(spec.data ? [spec.data.file] : [])].map((f) => path.join(dir, f))) {
      const info = await stat(file).catch((err: unknown) => {
        throw fileError(err, file);
      });
      graphBytes += info.size;
    }
  }
  return { dir, manifest, graphBytes };
}

/** Every model's manifest and size, checked before any is loaded: names must differ. */
export async function readRepository(modelDir: string, which: GraphSet = 'served'): Promise<ModelEntry[]> {
  const entries: ModelEntry[] = [];
  for (const dir of await modelDirectories(modelDir)) {
    const { manifest, graphBytes } = await readEntry(dir, which);
    const twin = entries.find((e) => e.manifest.name === manifest.name);
    if (twin)
      throw errors.repositoryInvalid(
        modelDir,
        `${path.basename(twin.dir)} and ${path.basename(dir)} are both named '${manifest.name}'`,
      );
    entries.push({ dir, manifest, graphBytes });
  }
  return entries;
}

/**
 * Resident memory a loaded model takes, in MiB, before activations: at most 1.2 times its
 * graph files plus 120 MiB for every model measured (BENCHMARKS §10: PVGG16 1.10-1.16× its
 * weights; small convolutional models carry a fixed ~35 MiB and, like PResNet18, up to 3× their
 * few MiB of weights in onnxruntime's re-laid-out copies), and about 50 MiB more when its
 * engine runs in a process of its own (a Node runtime); activations add with the input size
 * and BATCH_MAX_SIZE.
 */
export const estimatedMb = (graphBytes: number, ownProcess = false) =>
  Math.ceil((1.2 * graphBytes) / 2 ** 20 + 120 + (ownProcess ? ENGINE_PROCESS_MB : 0));

/** What a child process running an engine adds to a worker thread doing the same (measured). */
export const ENGINE_PROCESS_MB = 50;

/** Refuses a repository whose models' estimated memory exceeds `budgetMb` (0: no budget). */
export function checkBudget(entries: readonly ModelEntry[], budgetMb: number, ownProcess = false): void {
  if (budgetMb <= 0) return;
  const estimate = (e: ModelEntry) => estimatedMb(e.graphBytes, ownProcess);
  const need = entries.reduce((sum, e) => sum + estimate(e), 0);
  if (need > budgetMb) {
    const each = entries.map((e) => `${e.manifest.name} ${estimate(e)} MB`).join(', ');
    throw errors.memoryBudget(need, budgetMb, each);
  }
}
