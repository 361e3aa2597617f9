/**
 * The one way a tool changes a model's manifest.json: the file as written (not as parsed, which
 * fills in defaults) is edited, validated by the schema the server loads it with, and replaced
 * atomically, so that neither a refused edit nor an interrupted write leaves a manifest the
 * server would not load.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MANIFEST_FILE, parseManifest } from './manifest.js';

export type RawManifest = Record<string, unknown>;

/** Applies `edit` to `dir`'s manifest.json and writes it back; returns the file's path. */
export async function editManifest(dir: string, edit: (raw: RawManifest) => void): Promise<string> {
  const file = path.join(dir, MANIFEST_FILE);
  const raw = JSON.parse(await readFile(file, 'utf8')) as RawManifest;
  edit(raw);
  parseManifest(raw, file); // throws, naming the field, before anything is written
  const partial = `${file}.partial-${process.pid}`;
  await writeFile(partial, `${JSON.stringify(raw, null, 2)}\n`);
  await rename(partial, file);
  return file;
}
