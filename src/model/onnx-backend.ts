/**
 * onnxruntime-node behind one seam: sessions on the CPU or CUDA provider, plain float32 tensors
 * in and out (the rest of the service never imports onnxruntime).
 */
import path from 'node:path';
/**
 * The one seam around onnxruntime-node: nothing else in the service imports it.
 * Graphs take and return plain float32 tensors.
 */
import * as ort from 'onnxruntime-node';
import { errors } from '../errors.js';
import type { FloatTensor } from '../tensor.js';

export type ExecutionProvider = 'cuda' | 'cpu';

export interface SessionSettings {
  /** In order of preference; a provider that cannot load the graph is logged and skipped. */
  providers: readonly ExecutionProvider[];
  /** 0 lets onnxruntime choose (one thread per physical core). */
  intraOpThreads: number;
  /** default 'all' */
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** onnxruntime's CPU memory arena; default on */
  cpuMemArena?: boolean;
  /** let idle intra-op threads spin; default off */
  spinning?: boolean;
  /** refuse to fall back to the CPU when the CUDA provider cannot load a graph */
  gpuRequired?: boolean;
}

export interface TensorMetadata {
  name: string;
  type: string;
  shape: readonly (number | string)[];
}

export interface Graph {
  readonly file: string;
  readonly provider: ExecutionProvider;
  readonly inputs: readonly TensorMetadata[];
  readonly outputs: readonly TensorMetadata[];
  /**
   * Computes `outputs` (default: all of them). onnxruntime runs only the nodes that the asked
   * outputs need, so leaving one out skips its work.
   */
  run(feeds: Record<string, FloatTensor>, outputs?: readonly string[]): Promise<Record<string, FloatTensor>>;
  release(): Promise<void>;
}

export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

// onnxruntime's environment logger prints every failed provider load to stderr in colour; we
// catch those failures and log them ourselves, with context. Session logs stay at warning.
ort.env.logLevel = 'fatal';

function metadata(values: readonly ort.InferenceSession.ValueMetadata[]): TensorMetadata[] {
  return values.map((v) =>
    v.isTensor
      ? { name: v.name, type: v.type, shape: v.shape }
      : { name: v.name, type: 'non-tensor', shape: [] },
  );
}

export async function createGraph(file: string, settings: SessionSettings, log: Logger): Promise<Graph> {
  const failures: string[] = [];
  for (const provider of settings.providers) {
    if (provider === 'cpu' && settings.gpuRequired) throw errors.gpuUnavailable(file, failures.join('; '));
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(file, {
        executionProviders: [provider],
        intraOpNumThreads: settings.intraOpThreads,
        graphOptimizationLevel: settings.graphOptimization ?? 'all',
        enableCpuMemArena: settings.cpuMemArena ?? true,
        // Every session has its own intra-op pool; spinning pools of idle sessions would steal
        // the cores from the one that is running.
        extra: { session: { intra_op: { allow_spinning: settings.spinning ? '1' : '0' } } },
        logSeverityLevel: 2,
      });
    } catch (err) {
      const reason = (err as Error).message.split('\n')[0] ?? 'unknown error';
      // The CPU provider is always there: if it cannot load the graph, the graph is at fault.
      if (provider === 'cpu') throw errors.graphInvalid(file, reason);
      failures.push(`${provider}: ${reason}`);
      log.warn({ file, provider, reason }, 'execution provider unavailable, trying the next one');
      continue;
    }
    log.info({ file, provider }, `session on ${provider}: ${path.basename(file)}`);
    return wrap(file, provider, session);
  }
  throw errors.noExecutionProvider(file, failures.join('; '));
}

function wrap(file: string, provider: ExecutionProvider, session: ort.InferenceSession): Graph {
  const inputs = metadata(session.inputMetadata);
  const outputs = metadata(session.outputMetadata);
  return {
    file,
    provider,
    inputs,
    outputs,
    async run(feeds, wanted) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const { name } of inputs) {
        const t = feeds[name];
        if (!t) throw new Error(`${file}: missing input '${name}'`);
        ortFeeds[name] = new ort.Tensor('float32', t.data, t.dims);
      }
      const results = await (wanted ? session.run(ortFeeds, wanted) : session.run(ortFeeds));
      const out: Record<string, FloatTensor> = {};
      for (const [name, value] of Object.entries(results)) {
        out[name] = { data: value.data as Float32Array, dims: value.dims };
      }
      return out;
    },
    release: () => session.release(),
  };
}
