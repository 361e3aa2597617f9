/**
 * The gRPC messages as the protocol's transport-neutral request and answer (src/protocol/):
 * a ModelInferRequest becomes the same request object REST's JSON is, checked by the same
 * schema, and its tensor data (contents or raw_input_contents) travels beside it.
 */
import { z } from 'zod';
import type { InferAnswer } from '../protocol/infer.js';
import type { TensorData } from '../protocol/input-tensor.js';
import { inferRequestSchema, ProtocolError, type InferRequest } from '../protocol/open-inference.js';
import { tensorBytes } from '../protocol/output-tensor.js';

/** InferParameter, as proto-loader gives it with `oneofs: true`. */
export interface GrpcParameter {
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'double_param' | 'uint64_param';
  bool_param?: boolean;
  int64_param?: number;
  string_param?: string;
  double_param?: number;
  uint64_param?: number;
}
type GrpcParameters = Record<string, GrpcParameter> | undefined;

interface GrpcContents {
  bool_contents: boolean[];
  int_contents: number[];
  int64_contents: number[];
  uint_contents: number[];
  uint64_contents: number[];
  fp32_contents: number[];
  fp64_contents: number[];
  bytes_contents: Buffer[];
}

export interface ModelInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters?: GrpcParameters;
  inputs: {
    name: string;
    datatype: string;
    shape: number[];
    parameters?: GrpcParameters;
    contents?: GrpcContents;
  }[];
  outputs: { name: string; parameters?: GrpcParameters }[];
  raw_input_contents: Buffer[];
}

function plain(parameters: GrpcParameters): Record<string, string | number | boolean> | undefined {
  if (!parameters || Object.keys(parameters).length === 0) return undefined;
  const values: Record<string, string | number | boolean> = {};
  for (const [name, p] of Object.entries(parameters)) {
    const choice = p.parameter_choice;
    if (choice === undefined) throw new ProtocolError(`parameter '${name}' has no value`);
    values[name] = p[choice]!;
  }
  return values;
}

export function toGrpcParameters(values: Record<string, unknown>): Record<string, GrpcParameter> {
  const out: Record<string, GrpcParameter> = {};
  for (const [name, v] of Object.entries(values)) {
    if (typeof v === 'boolean') out[name] = { bool_param: v };
    else if (typeof v === 'string') out[name] = { string_param: v };
    else if (typeof v === 'number')
      out[name] = Number.isInteger(v) ? { int64_param: v } : { double_param: v };
  }
  return out;
}

/** The fields of InferTensorContents that carry each datatype this server takes. */
const CONTENTS_OF: Record<string, keyof GrpcContents> = { FP32: 'fp32_contents', BYTES: 'bytes_contents' };

/** Schema problems as one line, each naming its field as REST's 400s do. */
const problems = (error: z.ZodError) =>
  error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');

/**
 * The request as REST's schema sees it, and its data. The data is in `raw_input_contents` (one
 * entry per input) or in the input's `contents`, in the field of its datatype, never both.
 */
export function fromInferRequest(
  message: ModelInferRequest,
  limits: { maxTimesteps: number },
): { request: InferRequest; data: TensorData | undefined } {
  const withParameters = (p: GrpcParameters) => {
    const parameters = plain(p);
    return parameters ? { parameters } : {};
  };
  const candidate = {
    ...(message.id !== '' ? { id: message.id } : {}),
    ...withParameters(message.parameters),
    inputs: message.inputs.map((i) => ({
      name: i.name,
      datatype: i.datatype,
      shape: i.shape,
      ...withParameters(i.parameters),
    })),
    ...(message.outputs.length > 0
      ? { outputs: message.outputs.map((o) => ({ name: o.name, ...withParameters(o.parameters) })) }
      : {}),
  };
  const parsed = inferRequestSchema(limits).safeParse(candidate);
  if (!parsed.success) throw new ProtocolError(problems(parsed.error));
  const request = parsed.data;
  const input = message.inputs[0]!;
  const raw = message.raw_input_contents;
  const filled = input.contents
    ? (Object.keys(input.contents) as (keyof GrpcContents)[]).filter((k) => input.contents![k].length > 0)
    : [];
  if (raw.length > 0) {
    if (filled.length > 0)
      throw new ProtocolError('give the input in contents or in raw_input_contents, not both');
    if (raw.length !== message.inputs.length)
      throw new ProtocolError(
        `raw_input_contents holds ${raw.length} entries, one per input (${message.inputs.length}) is needed`,
      );
    return { request, data: { raw: raw[0]! } };
  }
  if (filled.length === 0) return { request, data: undefined };
  const field = CONTENTS_OF[input.datatype];
  if (field === undefined || filled.some((k) => k !== field))
    throw new ProtocolError(
      `input '${input.name}' is ${input.datatype}, but its data is in contents.${filled.join(', contents.')}` +
        (field ? ` (it belongs in contents.${field})` : ''),
    );
  return { request, data: { values: input.contents![field] as number[] | Buffer[] } };
}

/** The answer as a ModelInferResponse, every output's data in raw_output_contents. */
export function toInferResponse(answer: InferAnswer) {
  return {
    model_name: answer.model_name,
    model_version: answer.model_version,
    id: answer.id ?? '',
    parameters: toGrpcParameters(answer.parameters),
    outputs: answer.outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape })),
    raw_output_contents: answer.outputs.map(tensorBytes),
  };
}
