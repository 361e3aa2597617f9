/**
 * The same image through every way the server takes it: /classify (PNG body), the Open
 * Inference Protocol's REST form with JSON numbers, with binary tensor data, with the PNG as a
 * base64 BYTES element, and its gRPC form with raw FP32 bytes and with the encoded PNG. At 1 and
 * at N concurrent clients, T fixed: images/s, median latency, request size, and the server's
 * CPU time per image (its process and its engine workers, from /proc), all in one run.
 *
 *   npm run bench:protocols -- [--model DIR|pefficientnet_b0] [--duration S] [--clients 1,32]
 *
 * The load is generated on the same machine: on 2 cores the clients' own CPU competes with the
 * server's, which is why the server's CPU per image is reported beside the rate.
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  credentials,
  loadPackageDefinition,
  type GrpcObject,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { preprocess } from '../src/image/preprocess.js';
import { readManifest } from '../src/model/manifest.js';
import { childrenOf, DEFAULT_MODEL, machine, paperModel, quantile, ROOT, startServer, table } from './lib.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL },
    duration: { type: 'string', default: '5' },
    clients: { type: 'string', default: '1,32' },
    timesteps: { type: 'string', default: '8' },
  },
});
const T = Number(values.timesteps);
const duration = Number(values.duration);
const modelDir = existsSync(values.model) ? path.resolve(values.model) : paperModel(values.model).dir;
const manifest = await readManifest(modelDir);
const png = await readFile(path.join(DEFAULT_MODEL, 'samples', '0002-trouser.png'));
const pixels = (await preprocess(png, manifest.input)).tensor;
const shape = [1, manifest.input.channels, manifest.input.height, manifest.input.width];
const name = manifest.name;

console.log(
  `# protocols: ${name} (${shape.slice(1).join('x')}), T = ${T}, ${duration} s per row\n# ${machine()}\n`,
);

// A free port for gRPC, as startServer finds one for HTTP.
const { createServer } = await import('node:net');
const probe = createServer();
await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
const grpcPort = (probe.address() as { port: number }).port;
await new Promise((resolve) => probe.close(resolve));
const server = await startServer({ MODEL_DIR: modelDir, GRPC_PORT: String(grpcPort), MAX_QUEUE: '4096' });

/** CPU seconds used so far by a process and everything under it (utime + stime, from /proc). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const own = (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks at 100 Hz
  const below = await Promise.all((await childrenOf(pid)).map(cpuSeconds));
  return (Number.isFinite(own) ? own : 0) + below.reduce((a, b) => a + b, 0);
}

/**
 * `clients` loops sending one request each after the other for `duration` s; the requests in
 * flight then are waited for and counted, over the time they took (a slow model's batch may
 * take longer than the run).
 */
async function closedLoop(clients: number, send: () => Promise<void>) {
  const latencies: number[] = [];
  let failures = 0;
  const started = performance.now();
  const end = started + duration * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) {
        const start = performance.now();
        try {
          await send();
          latencies.push(performance.now() - start);
        } catch {
          failures++;
        }
      }
    }),
  );
  return {
    done: latencies.length,
    seconds: (performance.now() - started) / 1000,
    failures,
    p50: quantile(latencies, 0.5),
  };
}

const fetchOk = async (url: string, init: RequestInit) => {
  const res = await fetch(url, init);
  await res.arrayBuffer();
  if (!res.ok) throw new Error(String(res.status));
};
const infer = `${server.base}/v2/models/${name}/infer`;
const parameters = { timesteps: T };
const jsonBody = JSON.stringify({
  parameters,
  inputs: [{ name: 'input', datatype: 'FP32', shape, data: Array.from(pixels) }],
});
const bytesBody = JSON.stringify({
  parameters,
  inputs: [{ name: 'input', datatype: 'BYTES', shape: [1], data: [png.toString('base64')] }],
});
const binaryHeader = Buffer.from(
  JSON.stringify({
    parameters: { ...parameters, binary_data_output: true },
    inputs: [{ name: 'input', datatype: 'FP32', shape, parameters: { binary_data_size: pixels.byteLength } }],
  }),
);
const binaryBody = Buffer.concat([
  binaryHeader,
  Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength),
]);

const definition = loadSync(path.join(ROOT, 'proto', 'open_inference.proto'), {
  keepCase: true,
  longs: Number,
  defaults: true,
  oneofs: true,
});
const Inference = (loadPackageDefinition(definition)['inference'] as GrpcObject)[
  'GRPCInferenceService'
] as ServiceClientConstructor;
const grpcClient = new Inference(`127.0.0.1:${grpcPort}`, credentials.createInsecure()) as unknown as Record<
  string,
  (req: object, cb: (err: Error | null) => void) => void
>;
const grpcCall = (request: object) =>
  new Promise<void>((resolve, reject) =>
    grpcClient['ModelInfer']!(request, (err) => (err ? reject(err) : resolve())),
  );
const grpcParameters = { timesteps: { int64_param: T } };
const grpcRaw = {
  model_name: name,
  parameters: grpcParameters,
  inputs: [{ name: 'input', datatype: 'FP32', shape }],
  raw_input_contents: [Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength)],
};
const lengthPrefixed = Buffer.concat([Buffer.from(Uint32Array.of(png.length).buffer), png]);
const grpcEncoded = {
  model_name: name,
  parameters: grpcParameters,
  inputs: [{ name: 'input', datatype: 'BYTES', shape: [1] }],
  raw_input_contents: [lengthPrefixed],
};

const forms: { form: string; bytes: number; send: () => Promise<void> }[] = [
  {
    form: '/classify (PNG body)',
    bytes: png.length,
    send: () =>
      fetchOk(`${server.base}/classify?timesteps=${T}`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: new Uint8Array(png),
      }),
  },
  {
    form: 'REST JSON FP32',
    bytes: Buffer.byteLength(jsonBody),
    send: () =>
      fetchOk(infer, { method: 'POST', headers: { 'content-type': 'application/json' }, body: jsonBody }),
  },
  {
    form: 'REST binary FP32',
    bytes: binaryBody.length,
    send: () =>
      fetchOk(infer, {
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          'inference-header-content-length': String(binaryHeader.length),
        },
        body: new Uint8Array(binaryBody),
      }),
  },
  {
    form: 'REST JSON BYTES (base64 PNG)',
    bytes: Buffer.byteLength(bytesBody),
    send: () =>
      fetchOk(infer, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bytesBody }),
  },
  { form: 'gRPC raw FP32', bytes: pixels.byteLength, send: () => grpcCall(grpcRaw) },
  { form: 'gRPC BYTES (PNG)', bytes: lengthPrefixed.length, send: () => grpcCall(grpcEncoded) },
];

// Every form answers before it is measured (and warms the engine).
for (const f of forms) await f.send();

const rows: (string | number)[][] = [];
for (const clients of values.clients.split(',').map(Number)) {
  for (const f of forms) {
    const cpuBefore = await cpuSeconds(server.pid);
    const r = await closedLoop(clients, f.send);
    const cpu = (await cpuSeconds(server.pid)) - cpuBefore;
    rows.push([
      f.form,
      clients,
      f.bytes,
      (r.done / r.seconds).toFixed(1),
      r.p50.toFixed(1),
      r.done > 0 ? ((cpu * 1000) / r.done).toFixed(2) : '-',
      r.failures,
    ]);
  }
}
await server.stop();
console.log(
  table(['form', 'clients', 'request bytes', 'images/s', 'p50 ms', 'server CPU ms/image', 'failures'], rows),
);
process.exit(0);
