/** Prometheus metrics of the service and its engine, on their own registry. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { StepStats } from './engine/batch-scheduler.js';

const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createMetrics() {
  const registry = new Registry();
  // Read when scraped: each model's images in its engine now (set by watchInFlight).
  let inFlight: () => [model: string, submitted: number, inTransit: number][] = () => [];
  collectDefaultMetrics({ register: registry, prefix: 'predify_' });
  const m = {
    registry,
    httpRequests: new Counter({
      name: 'predify_http_requests_total',
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'predify_http_request_duration_seconds',
      help: 'Time from request to response, by route',
      labelNames: ['route'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    grpcRequests: new Counter({
      name: 'predify_grpc_requests_total',
      help: 'gRPC calls answered, by method and status code',
      labelNames: ['method', 'code'] as const,
      registers: [registry],
    }),
    grpcDuration: new Histogram({
      name: 'predify_grpc_request_duration_seconds',
      help: 'Time from call to answer, by gRPC method',
      labelNames: ['method'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    engineBatchSize: new Gauge({
      name: 'predify_engine_batch_size',
      help: "Most samples a model's engine steps together, and how that was chosen (fixed, measured, recorded)",
      labelNames: ['model', 'source'] as const,
      registers: [registry],
    }),
    engineInFlight: new Gauge({
      name: 'predify_engine_in_flight',
      help: "Images a model's engine has taken in, from any route (/classify, V2 REST, gRPC), not yet answered: queued or stepping. With predify_engine_in_transit, the work a replica owes: what to scale a fleet on",
      labelNames: ['model'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [model, n, transit] of inFlight()) this.set({ model }, n - transit);
      },
    }),
    engineInTransit: new Gauge({
      name: 'predify_engine_in_transit',
      help: "Images handed to a model's engine worker that it has not taken in yet: crossing, or waiting for the model call running to end. At most a call's arrivals while the hand-off keeps up",
      labelNames: ['model'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [model, , transit] of inFlight()) this.set({ model }, transit);
      },
    }),
    /** Where the in-flight gauge reads from (the models served, which loads change). */
    watchInFlight(source: () => [model: string, submitted: number, inTransit: number][]) {
      inFlight = source;
    },
    classifyInFlight: new Gauge({
      name: 'predify_classify_in_flight',
      help: 'Classification requests received and not yet answered',
      registers: [registry],
    }),
    queueWait: new Histogram({
      name: 'predify_queue_wait_seconds',
      help: 'Time a classification waited before joining an engine batch',
      buckets: latencyBuckets,
      registers: [registry],
    }),
    inference: new Histogram({
      name: 'predify_inference_seconds',
      help: 'Engine time of a classification, from joining a batch to its last timestep',
      buckets: latencyBuckets,
      registers: [registry],
    }),
    stepDuration: new Histogram({
      name: 'predify_engine_step_seconds',
      help: 'Duration of one engine step (one timestep of every sample in the batch)',
      buckets: latencyBuckets,
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'predify_batch_size',
      help: 'Samples stepped together in one engine step',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers: [registry],
    }),
    timesteps: new Counter({
      name: 'predify_timesteps_total',
      help: 'Sample-timesteps computed (t = 0 included)',
      registers: [registry],
    }),
    engineRestarts: new Counter({
      name: 'predify_engine_restarts_total',
      help: 'Engine worker deaths that began a restart, by model',
      labelNames: ['model'] as const,
      registers: [registry],
    }),
    engineRequestsLost: new Counter({
      name: 'predify_engine_requests_lost_total',
      help: 'Requests answered 503 because the engine worker holding them died, by model',
      labelNames: ['model'] as const,
      registers: [registry],
    }),
    requestedTimesteps: new Histogram({
      name: 'predify_requested_timesteps',
      help: 'Timesteps T asked for per classification',
      buckets: [0, 1, 2, 4, 8, 16, 32, 64, 128],
      registers: [registry],
    }),
  };
  return {
    ...m,
    /** Wire to InferenceEngine.onStep. */
    recordStep(stats: StepStats): void {
      m.stepDuration.observe(stats.ms / 1000);
      m.batchSize.observe(stats.batchSize);
      m.timesteps.inc(stats.batchSize);
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
