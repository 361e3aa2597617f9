/**
 * The binary tensor data extension of the protocol's REST form (Triton's, which KServe also
 * documents): a body of JSON followed by tensors' raw bytes, the JSON's length in the header
 * Inference-Header-Content-Length; inputs sent so say `parameters.binary_data_size`, and
 * outputs asked for so (`binary_data` on the output, or `binary_data_output` on the request)
 * come back the same way.
 */
import type { TensorData } from './input-tensor.js';
import { ProtocolError, type InferRequest } from './open-inference.js';
import { jsonValues, tensorBytes, type OutputTensor } from './output-tensor.js';
import type { InferAnswer } from './infer.js';

export const HEADER_LENGTH = 'inference-header-content-length';

/** Splits a body at the JSON's declared length. */
export function splitBody(body: Buffer, declared: string): { json: Buffer; tail: Buffer } {
  if (!/^\d{1,15}$/.test(declared.trim()))
    throw new ProtocolError(`${HEADER_LENGTH} must be a whole number of bytes, got '${declared}'`);
  const length = Number(declared);
  if (length > body.length)
    throw new ProtocolError(`${HEADER_LENGTH} is ${length}, but the body holds ${body.length} bytes`);
  return { json: body.subarray(0, length), tail: body.subarray(length) };
}

/**
 * The input's data: after the JSON when it gives binary_data_size (the sizes must add up to
 * exactly the bytes there), else its JSON `data`.
 */
export function inputData(request: InferRequest, tail: Buffer | undefined): TensorData | undefined {
  const input = request.inputs[0]!;
  const size = input.parameters?.['binary_data_size'];
  if (size === undefined) {
    if (tail !== undefined && tail.length > 0)
      throw new ProtocolError(`${tail.length} bytes follow the JSON, but no input says binary_data_size`);
    return input.data === undefined ? undefined : { values: input.data };
  }
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 0)
    throw new ProtocolError(
      `input '${input.name}': parameters.binary_data_size must be a whole number of bytes`,
    );
  if (input.data !== undefined)
    throw new ProtocolError(`input '${input.name}' gives both data and binary_data_size: give one`);
  const after = tail ?? Buffer.alloc(0);
  if (size !== after.length)
    throw new ProtocolError(
      `input '${input.name}': binary_data_size is ${size}, but ${after.length} bytes follow the JSON`,
    );
  return { raw: after };
}

/** Whether the answer's output `name` is asked for as binary data. */
function wantsBinary(request: InferRequest, name: string): boolean {
  const asked = request.outputs?.find((o) => o.name === name)?.parameters?.['binary_data'];
  if (typeof asked === 'boolean') return asked;
  return request.parameters?.['binary_data_output'] === true;
}

function jsonOutput(t: OutputTensor) {
  return { name: t.name, datatype: t.datatype, shape: t.shape, data: jsonValues(t) };
}

/**
 * The answer as JSON, or, when an output is asked for as binary data, as the JSON header with
 * those outputs' bytes after it, in the order of `outputs`.
 */
export function answerBody(
  answer: InferAnswer,
  request: InferRequest,
): { json: object } | { binary: Buffer; headerLength: number } {
  const binary = answer.outputs.filter((t) => wantsBinary(request, t.name));
  if (binary.length === 0) return { json: { ...answer, outputs: answer.outputs.map(jsonOutput) } };
  const bytes = new Map(binary.map((t) => [t.name, tensorBytes(t)]));
  const header = Buffer.from(
    JSON.stringify({
      ...answer,
      outputs: answer.outputs.map((t) => {
        const raw = bytes.get(t.name);
        if (!raw) return jsonOutput(t);
        return {
          name: t.name,
          datatype: t.datatype,
          shape: t.shape,
          parameters: { binary_data_size: raw.length },
        };
      }),
    }),
  );
  return { binary: Buffer.concat([header, ...bytes.values()]), headerLength: header.length };
}
