/**
 * A model file that cannot be read says why: not found, permission denied, not a directory or
 * unreadable, each with its own code and the path, so that a permission problem (a directory
 * written as root, served by a non-root user) does not look like a wrong MODEL_DIR.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fileError } from '../../src/model/file-errors.js';
import { readManifest } from '../../src/model/manifest.js';
import { readRepository } from '../../src/model/repository.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'predify-files-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const errno = (code: string) => Object.assign(new Error(code), { code });

describe('fileError', () => {
  it.each([
    ['ENOENT', 'PREDIFY_ERR_MODEL_NOT_FOUND', /model file not found: \/m\/manifest\.json/],
    [
      'EACCES',
      'PREDIFY_ERR_MODEL_PERMISSION_DENIED',
      /permission denied reading \/m\/manifest\.json.*chmod -R a\+rX/,
    ],
    ['EPERM', 'PREDIFY_ERR_MODEL_PERMISSION_DENIED', /permission denied/],
    ['ENOTDIR', 'PREDIFY_ERR_MODEL_NOT_A_DIRECTORY', /\/m\/manifest\.json: a part of this path is a file/],
    ['EIO', 'PREDIFY_ERR_MODEL_UNREADABLE', /cannot read \/m\/manifest\.json: EIO/],
  ])('%s is %s', (code, expected, message) => {
    const err = fileError(errno(code), '/m/manifest.json');
    expect(err.code).toBe(expected);
    expect(err.message).toMatch(message);
  });

  // process.getuid exists on POSIX systems only: the only ones the service runs on.
  it.skipIf(typeof process.getuid !== 'function')(
    'says which uid the server runs as when permission is denied',
    () => {
      expect(fileError(errno('EACCES'), '/m').message).toContain(`uid ${process.getuid!()}`);
    },
  );
});

describe('reading a model directory', () => {
  it('reports a MODEL_DIR that is a file as not a directory', async () => {
    const file = path.join(dir, 'model.onnx');
    await writeFile(file, 'x');
    await expect(readRepository(file)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_MODEL_NOT_A_DIRECTORY',
      message: expect.stringContaining(file),
    });
  });

  it('reports a missing MODEL_DIR as its missing manifest', async () => {
    await expect(readRepository(path.join(dir, 'nope'))).rejects.toMatchObject({
      code: 'PREDIFY_ERR_MODEL_NOT_FOUND',
      message: expect.stringContaining(path.join(dir, 'nope', 'manifest.json')),
    });
  });

  it('reports a manifest.json that cannot be read as a file as unreadable, with the reason', async () => {
    await mkdir(path.join(dir, 'manifest.json'));
    await expect(readManifest(dir)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_MODEL_UNREADABLE',
      message: `cannot read ${path.join(dir, 'manifest.json')}: EISDIR`,
    });
  });
});
