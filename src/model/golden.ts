/**
 * Golden reference outputs written by the PyTorch reference implementation of the dynamics
 * (scripts/predify/model.py, autograd, batch of one) next to a model's graphs.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { errors } from '../errors.js';
import type { Manifest } from './manifest.js';

const goldenSchema = z.object({
  timesteps: z.number().int().min(0),
  cases: z
    .array(
      z.object({
        name: z.string(),
        input: z.array(z.number()),
        label: z.number().int().optional(),
        /** logits of the unmodified backbone, computed without any PCoder machinery */
        feedforward: z.array(z.number()),
        logits: z.array(z.array(z.number())),
        errors: z.array(z.array(z.number())),
      }),
    )
    .min(1),
});

export type Golden = z.infer<typeof goldenSchema>;

export async function readGolden(dir: string, manifest: Manifest): Promise<Golden> {
  if (!manifest.golden)
    throw errors.manifestInvalid(
      path.join(dir, 'manifest.json'),
      'golden: this model has no golden reference',
    );
  const file = path.join(dir, manifest.golden.file);
  const parsed = goldenSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
  if (!parsed.success)
    throw errors.manifestInvalid(
      file,
      parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  return parsed.data;
}
