/**
 * One Open Inference Protocol inference, whatever carried it (REST JSON, REST with binary data,
 * gRPC): the request's parameters checked against the model, its images classified on the
 * model's engine, the answer's outputs. The transports only read requests and write answers.
 */
import type { Classifier } from '../engine/classifier.js';
import { imagesOf, type TensorData } from './input-tensor.js';
import {
  checkVersion,
  defaultOutputs,
  ProtocolError,
  SCORE_OUTPUT,
  type InferRequest,
} from './open-inference.js';
import { outputsOf, type OutputTensor } from './output-tensor.js';

export interface InferCall {
  classifier: Classifier;
  /** the request, validated by inferRequestSchema; its input's data may travel apart */
  request: InferRequest;
  data: TensorData | undefined;
  /** the most images one request may carry */
  maxBatch: number;
  /** aborted when the client goes or the deadline passes: the images leave the engine */
  signal: AbortSignal;
  requestId?: string;
}

export interface InferAnswer {
  model_name: string;
  model_version: string;
  id?: string;
  parameters: {
    timesteps: number;
    profile: string;
    max_timesteps?: number;
    tolerance?: number;
    patience?: number;
    confidence?: number;
    rule?: 'asked' | 'calibrated' | 'default';
  };
  outputs: OutputTensor[];
}

export async function infer({
  classifier,
  request,
  data,
  maxBatch,
  signal,
  requestId,
}: InferCall): Promise<InferAnswer> {
  const { manifest } = classifier;
  if (request.model_name !== undefined && request.model_name !== '' && request.model_name !== classifier.name)
    throw new ProtocolError(
      `model_name '${request.model_name}' is not the model '${classifier.name}' the request is for`,
    );
  checkVersion(manifest, request.model_version);
  const p = request.parameters ?? {};
  if (!manifest.corruptionScore && request.outputs?.some((o) => o.name === SCORE_OUTPUT))
    throw new ProtocolError(
      `model ${manifest.name} has no calibrated corruption score: ask for other outputs`,
    );
  const { profile, timesteps, settle, ruleSource } = classifier.resolve({
    profile: p.profile,
    timesteps: p.timesteps,
    maxTimesteps: p.max_timesteps,
    tolerance: p.tolerance,
    patience: p.patience,
    confidence: p.confidence,
    topk: 1,
  });
  const images = await imagesOf(request.inputs[0]!, data, manifest, maxBatch);
  signal.throwIfAborted();

  // One engine job per image: they share the engine's batches like any other requests.
  const settled = await Promise.allSettled(
    images.map((image) =>
      classifier.classify(image, {
        timesteps,
        ...(settle ? { settle } : {}),
        topk: 1,
        profile,
        signal,
        ...(requestId !== undefined ? { requestId } : {}),
      }),
    ),
  );
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  const results = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  return {
    model_name: classifier.name,
    model_version: manifest.modelVersion,
    ...(request.id !== undefined ? { id: request.id } : {}),
    parameters: {
      timesteps: Math.max(...results.map((r) => r.timesteps)),
      profile,
      ...(settle
        ? {
            max_timesteps: timesteps,
            tolerance: settle.tolerance,
            patience: settle.patience,
            ...(settle.confidence !== undefined ? { confidence: settle.confidence } : {}),
            rule: ruleSource ?? 'asked',
          }
        : {}),
    },
    outputs: outputsOf(
      results,
      manifest,
      request.outputs?.map((o) => o.name) ?? defaultOutputs(manifest, settle !== undefined),
    ),
  };
}
