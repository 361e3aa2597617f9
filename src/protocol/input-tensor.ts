/**
 * The protocol's input tensor, however it travelled (JSON `data`, binary data after the JSON,
 * gRPC `contents` or `raw_input_contents`), made into the model's inputs: one Float32Array of
 * C*H*W values per image. FP32 tensors are taken as they are; BYTES tensors hold encoded
 * images, decoded and preprocessed by the same code as /classify.
 */
import type { Manifest } from '../model/manifest.js';
import { decodeForModel, type ModelPixels } from '../image/preprocess.js';
import type { ModelInput } from '../engine/engine-request.js';
import { INPUT_NAME, ProtocolError, type JsonTensorData } from './open-inference.js';

/** A tensor's elements as values (JSON, gRPC `contents`) or as raw little-endian bytes. */
export type TensorData = { values: readonly (JsonTensorData | Buffer)[] } | { raw: Buffer };

export interface InputHeader {
  name: string;
  datatype: string;
  shape: readonly number[];
}

export const INPUT_DATATYPES = ['FP32', 'BYTES'] as const;

/**
 * The request's images. Checks name, datatype and shape against the model and the batch
 * limit, and that the data holds exactly as many elements (FP32: finite numbers) as the shape
 * says. BYTES elements that are not images are refused naming their index.
 */
export async function imagesOf(
  input: InputHeader,
  data: TensorData | undefined,
  manifest: Manifest,
  maxBatch: number,
): Promise<ModelInput[]> {
  if (input.name !== INPUT_NAME)
    throw new ProtocolError(`unknown input '${input.name}': this model's input is '${INPUT_NAME}'`);
  if (data === undefined)
    throw new ProtocolError(
      `input '${INPUT_NAME}' has no data: give 'data', or 'binary_data_size' with the data after the JSON`,
    );
  if (input.datatype === 'FP32') return pixelsOf(input.shape, data, manifest, maxBatch);
  if (input.datatype === 'BYTES') return decodeImages(input.shape, data, manifest, maxBatch);
  throw new ProtocolError(
    `input datatype must be FP32 (preprocessed pixels) or BYTES (encoded images), got ${input.datatype}`,
  );
}

function checkBatch(batch: number, maxBatch: number): void {
  if (batch < 1 || batch > maxBatch)
    throw new ProtocolError(`batch size must be between 1 and ${maxBatch} (BATCH_MAX_SIZE), got ${batch}`);
}

function pixelsOf(
  shape: readonly number[],
  data: TensorData,
  manifest: Manifest,
  maxBatch: number,
): Float32Array[] {
  const { channels, height, width } = manifest.input;
  const expected = [channels, height, width];
  const sample = shape.length === 4 ? shape.slice(1) : shape;
  if ((shape.length !== 3 && shape.length !== 4) || sample.some((d, k) => d !== expected[k]))
    throw new ProtocolError(
      `input shape must be [N, ${expected.join(', ')}] or [${expected.join(', ')}], got [${shape.join(', ')}]`,
    );
  const batch = shape.length === 4 ? shape[0]! : 1;
  checkBatch(batch, maxBatch);
  const size = channels * height * width;
  const flat = new Float32Array(batch * size);

  if ('raw' in data) {
    if (data.raw.length !== flat.byteLength)
      throw new ProtocolError(
        `input '${INPUT_NAME}' has ${data.raw.length} bytes of data, FP32 [${shape.join(', ')}] needs ${flat.byteLength}`,
      );
    // Copied: the bytes may sit at any offset of the body, a Float32Array needs 4-byte alignment.
    new Uint8Array(flat.buffer).set(data.raw);
    for (const v of flat)
      if (!Number.isFinite(v)) throw new ProtocolError('input data must be finite numbers');
  } else {
    let count = 0;
    const fill = (v: JsonTensorData | Buffer): void => {
      if (typeof v === 'number') {
        if (!Number.isFinite(v)) throw new ProtocolError('input data must be finite numbers');
        if (count < flat.length) flat[count] = v;
        count++;
      } else if (Array.isArray(v)) for (const item of v) fill(item);
      else throw new ProtocolError('FP32 input data must be numbers');
    };
    for (const item of data.values) fill(item);
    if (count !== flat.length)
      throw new ProtocolError(
        `input data holds ${count} values, shape [${shape.join(', ')}] needs ${flat.length}`,
      );
  }
  return Array.from({ length: batch }, (_, n) => flat.subarray(n * size, (n + 1) * size));
}

async function decodeImages(
  shape: readonly number[],
  data: TensorData,
  manifest: Manifest,
  maxBatch: number,
): Promise<ModelPixels[]> {
  if (!(shape.length === 1 || (shape.length === 2 && shape[1] === 1)))
    throw new ProtocolError(
      `a BYTES input holds one encoded image per element: shape [N], got [${shape.join(', ')}]`,
    );
  const batch = shape[0]!;
  checkBatch(batch, maxBatch);
  const elements = 'raw' in data ? lengthPrefixed(data.raw) : data.values.flatMap(bytesOf);
  if (elements.length !== batch)
    throw new ProtocolError(
      `input data holds ${elements.length} images, shape [${shape.join(', ')}] needs ${batch}`,
    );
  const decoded = await Promise.allSettled(elements.map((bytes) => decodeForModel(bytes, manifest.input)));
  return decoded.map((d, n) => {
    if (d.status === 'fulfilled') return d.value.input;
    throw new ProtocolError(
      `input element ${n} is not an image the server decodes: ${(d.reason as Error).message}`,
    );
  });
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A BYTES element in JSON: a base64 string, the only way JSON text carries a file's bytes. */
function bytesOf(v: JsonTensorData | Buffer, index: number): Buffer[] {
  if (Buffer.isBuffer(v)) return [v];
  if (Array.isArray(v)) return v.flatMap(bytesOf);
  if (typeof v !== 'string' || v.length % 4 !== 0 || !BASE64.test(v))
    throw new ProtocolError(`BYTES input data must be base64 strings (element ${index} is not)`);
  return [Buffer.from(v, 'base64')];
}

/** The binary form of BYTES elements: each after its length, a 4-byte little-endian integer. */
export function lengthPrefixed(raw: Buffer): Buffer[] {
  const elements: Buffer[] = [];
  let at = 0;
  while (at < raw.length) {
    if (at + 4 > raw.length)
      throw new ProtocolError(`BYTES data ends inside element ${elements.length}'s 4-byte length`);
    const length = raw.readUInt32LE(at);
    if (at + 4 + length > raw.length)
      throw new ProtocolError(
        `BYTES element ${elements.length} declares ${length} bytes, only ${raw.length - at - 4} follow`,
      );
    elements.push(raw.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return elements;
}
