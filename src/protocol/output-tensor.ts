/**
 * The protocol's output tensors for a batch of classifications, from what the engine computed:
 * probabilities are the softmax of each timestep's logits, predictions their argmax, and the
 * errors e_i(t) as they came. Each transport writes them its own way: JSON numbers, or bytes
 * (the binary extension, gRPC's raw_output_contents).
 */
import type { Classification } from '../engine/classifier.js';
import { argmax, softmax } from '../engine/results.js';
import type { Manifest } from '../model/manifest.js';
import { OUTPUT_NAMES, type OutputName } from './open-inference.js';

export interface OutputTensor {
  name: OutputName;
  datatype: 'FP32' | 'INT64';
  shape: number[];
  /** FP32: the float32 values; INT64: whole numbers */
  data: Float32Array | number[];
}

export function outputsOf(
  results: readonly Classification[],
  manifest: Manifest,
  wanted: readonly OutputName[] = OUTPUT_NAMES,
): OutputTensor[] {
  const batch = results.length;
  // Anytime samples stop at their own timesteps: each is padded with its last step.
  const steps = Math.max(...results.map((r) => r.outputs.length));
  const classes = manifest.labels.length;
  const pcoders = manifest.pcoders.length;
  const outputs = results.flatMap((r) =>
    Array.from({ length: steps }, (_, t) => r.outputs[Math.min(t, r.outputs.length - 1)]!),
  );
  // One value of `width` numbers per sample and timestep: [batch, steps, width].
  const perStep = (values: (o: (typeof outputs)[number]) => ArrayLike<number>, width: number) => {
    const all = new Float32Array(outputs.length * width);
    outputs.forEach((o, k) => all.set(values(o), k * width));
    return { datatype: 'FP32' as const, shape: [batch, steps, width], data: all };
  };
  const tensors = {
    probabilities: () => perStep((o) => softmax(o.logits), classes),
    predictions: () => ({
      datatype: 'INT64' as const,
      shape: [batch, steps],
      data: outputs.map((o) => argmax(o.logits)),
    }),
    pcoder_errors: () => perStep((o) => o.errors, pcoders),
    logits: () => perStep((o) => o.logits, classes),
    timesteps: () => ({ datatype: 'INT64' as const, shape: [batch], data: results.map((r) => r.timesteps) }),
    corruption_score: () => ({
      datatype: 'FP32' as const,
      shape: [batch],
      data: Float32Array.from(results, (r) => r.corruptionScore ?? Number.NaN),
    }),
  } satisfies Record<OutputName, () => Omit<OutputTensor, 'name'>>;
  return wanted.map((name) => ({ name, ...tensors[name]() }));
}

/** The values as JSON numbers (float32 values widened exactly to doubles). */
export function jsonValues(tensor: OutputTensor): number[] {
  return Array.from(tensor.data);
}

/** The values as the protocol's raw bytes: little-endian, row-major, no padding. */
export function tensorBytes(tensor: OutputTensor): Buffer {
  if (tensor.datatype === 'FP32') {
    const values = tensor.data as Float32Array;
    return toLittleEndian(Buffer.from(values.buffer, values.byteOffset, values.byteLength), 4);
  }
  const values = BigInt64Array.from(tensor.data as number[], (v) => BigInt(v));
  return toLittleEndian(Buffer.from(values.buffer), 8);
}

const BIG_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 0;

function toLittleEndian(bytes: Buffer, width: 4 | 8): Buffer {
  if (!BIG_ENDIAN_HOST) return bytes;
  const copy = Buffer.from(bytes);
  return width === 4 ? copy.swap32() : copy.swap64();
}
