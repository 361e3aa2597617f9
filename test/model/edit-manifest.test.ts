/**
 * editManifest, the one way tools change a manifest.json: an edit the schema accepts is written
 * as the file was plus the change; one it refuses leaves the file as it was, byte for byte.
 */
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { editManifest } from '../../src/model/edit-manifest.js';
import { DEFAULT_MODEL } from '../paths.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'edit-manifest-'));
  await cp(path.join(DEFAULT_MODEL, 'manifest.json'), path.join(dir, 'manifest.json'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('editManifest', () => {
  it('writes an accepted edit and keeps everything else as written', async () => {
    const before = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    const file = await editManifest(dir, (raw) => (raw['recommendedTimesteps'] = 3));
    const after = JSON.parse(await readFile(file, 'utf8'));
    expect(after).toEqual({ ...before, recommendedTimesteps: 3 });
    expect(await readdir(dir)).toEqual(['manifest.json']);
  });

  it('refuses an edit the server would refuse, naming the field, and leaves the file alone', async () => {
    const before = await readFile(path.join(dir, 'manifest.json'));
    await expect(editManifest(dir, (raw) => (raw['recommendedTimesteps'] = -1))).rejects.toThrow(
      /recommendedTimesteps/,
    );
    expect((await readFile(path.join(dir, 'manifest.json'))).equals(before)).toBe(true);
    expect(await readdir(dir)).toEqual(['manifest.json']);
  });
});
