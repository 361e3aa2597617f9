/**
 * The Kubernetes and KServe manifests agree with the code: ports, probe paths that answer as
 * the probes expect, environment variables the service reads (with valid values), a
 * termination grace period longer than the drain, names that refer to each other.
 */
import { execFileSync } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import {
  credentials,
  loadPackageDefinition,
  type GrpcObject,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { CONFIG_VARIABLES, loadConfig, type Config } from '../../src/config/config.js';
import { FLEET_OPTIONS } from '../../src/cli/fleet-args.js';
import { STUDY_OPTIONS } from '../../src/cli/study-args.js';
import { createMetrics } from '../../src/metrics.js';
import { PROTO_DIR } from '../../src/grpc/protos.js';
import { startGrpc } from '../../src/grpc/server.js';
import type { ServiceState } from '../../src/service-state.js';
import { restartBackoffMs } from '../../src/engine/supervised-engine.js';
import { buildTestApp, silent } from '../helpers.js';
import { readManifest } from '../../src/model/manifest.js';
import { DEFAULT_MODEL, ROOT } from '../paths.js';

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const torchvisionName = (name: string) => /^[a-z][a-z0-9_]*$/.test(name);

async function manifests(file: string): Promise<Doc[]> {
  const text = await readFile(path.join(ROOT, 'deploy', 'kubernetes', file), 'utf8');
  return parseAllDocuments(text).map((d) => {
    expect(d.errors).toEqual([]);
    return d.toJSON() as Doc;
  });
}

const envOf = (container: Doc) =>
  Object.fromEntries((container.env as Doc[]).filter((e) => 'value' in e).map((e) => [e.name, e.value]));

async function checkProbes(container: Doc) {
  const { app, config } = await buildTestApp({}, { ready: false });
  // Liveness must answer while the model loads; readiness must exist and say not ready until it has.
  const live = container.livenessProbe.httpGet.path;
  const probe = container.readinessProbe;
  try {
    expect((await app.inject(live)).statusCode).toBe(200);
    if (probe.httpGet) return expect((await app.inject(probe.httpGet.path)).statusCode).toBe(503);
  } finally {
    await app.close();
  }
  // A grpc probe: on GRPC_PORT, the health service's status for its service ("" unless named).
  const env = loadConfig(envOf(container));
  expect(probe.grpc.port).toBe(env.GRPC_PORT);
  const service = probe.grpc.service ?? '';
  const loading = await grpcHealth({ config, state: {} }, service);
  expect(loading).toBe('NOT_SERVING');
  const { app: loaded, state, config: c } = await buildTestApp();
  try {
    expect(await grpcHealth({ config: c, state }, service)).toBe('SERVING');
  } finally {
    await loaded.close();
  }
}

/** What grpc.health.v1's Check answers a server on `state` for `service`, over a real socket. */
async function grpcHealth(
  { config, state }: { config: Config; state: ServiceState },
  service: string,
): Promise<string> {
  const server = await startGrpc({ config, state, logger: silent }, '127.0.0.1:0');
  const definition = loadSync(path.join(PROTO_DIR, 'health.proto'), { keepCase: true, enums: String });
  const v1 = ((loadPackageDefinition(definition)['grpc'] as GrpcObject)['health'] as GrpcObject)[
    'v1'
  ] as GrpcObject;
  const Health = v1['Health'] as ServiceClientConstructor;
  const client = new Health(`127.0.0.1:${server.port}`, credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) =>
      client['Check']!({ service }, (err: Error | null, res: { status: string }) =>
        err ? reject(err) : resolve(res.status),
      ),
    );
  } finally {
    client.close();
    await server.close(100);
  }
}

describe('deploy/kubernetes', () => {
  it('Deployment: GPU request, the service port, probes on our health routes, valid env', async () => {
    const [deployment] = await manifests('deployment.yaml');
    expect(deployment!.kind).toBe('Deployment');
    const pod = deployment!.spec.template.spec;
    const container = pod.containers[0];
    const env = envOf(container);
    for (const e of container.env as Doc[]) expect(CONFIG_VARIABLES).toContain(e.name);
    const config = loadConfig(env);
    expect(container.ports[0].containerPort).toBe(config.PORT);
    expect(container.ports.find((p: Doc) => p.name === 'grpc').containerPort).toBe(config.GRPC_PORT);
    expect(container.resources.limits['nvidia.com/gpu']).toBe('1');
    expect(config.EXECUTION_PROVIDERS).toEqual(['cuda', 'cpu']);
    await checkProbes(container);
    expect(container.startupProbe.httpGet.path).toBe(container.livenessProbe.httpGet.path);
    // SIGKILL must not come before the drain is over.
    const preStop = Number(container.lifecycle.preStop.exec.command[1]);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      config.SHUTDOWN_DRAIN_MS + preStop * 1000,
    );
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    // The user the images run as (the Dockerfile's APP_UID, checked in the image build).
    const dockerfile = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    const uid = Number(/^ARG APP_UID=(\d+)$/m.exec(dockerfile)?.[1]);
    expect(pod.securityContext.runAsUser).toBe(uid);
    expect(dockerfile).toMatch(/^RUN test "\$\(id -u node\)" = "\$\{APP_UID\}"$/m);
    expect(dockerfile).toMatch(/^USER node$/m);
    // A dead engine worker is replaced within the process: liveness must not give up on the
    // pod before one restart, with all its backoff, has had its chance.
    const liveness = container.livenessProbe;
    const backoff = Array.from({ length: config.ENGINE_RESTART_ATTEMPTS }, (_, k) => restartBackoffMs(k));
    expect(liveness.periodSeconds * liveness.failureThreshold * 1000).toBeGreaterThan(
      backoff.reduce((a, b) => a + b, 0),
    );
  });

  it('Service and HorizontalPodAutoscaler point at the Deployment', async () => {
    const [deployment] = await manifests('deployment.yaml');
    const [service] = await manifests('service.yaml');
    const [hpa] = await manifests('hpa.yaml');
    const labels = deployment!.spec.template.metadata.labels;
    expect(service!.spec.selector).toEqual(labels);
    const portNames = deployment!.spec.template.spec.containers[0].ports.map((p: Doc) => p.name);
    for (const port of service!.spec.ports) expect(portNames).toContain(port.targetPort);
    expect(hpa!.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: deployment!.metadata.name });
    expect(hpa!.spec.minReplicas).toBeLessThanOrEqual(hpa!.spec.maxReplicas);
  });

  it('KServe: a ServingRuntime running our container and an InferenceService using it', async () => {
    const docs = await manifests('kserve.yaml');
    const runtime = docs.find((d) => d.kind === 'ServingRuntime')!;
    const service = docs.find((d) => d.kind === 'InferenceService')!;
    const container = runtime.spec.containers[0];
    const env = envOf(container);
    for (const e of container.env as Doc[]) expect(CONFIG_VARIABLES).toContain(e.name);
    const config = loadConfig(env);
    expect(config.MODEL_DIR).toBe('/mnt/models'); // where KServe's storage initializer puts the model
    expect(container.ports[0].containerPort).toBe(config.PORT);
    await checkProbes(container);
    expect(service.spec.predictor.model.runtime).toBe(runtime.metadata.name);
    expect(runtime.spec.supportedModelFormats.map((f: Doc) => f.name)).toContain(
      service.spec.predictor.model.modelFormat.name,
    );
    // V2 clients address /v2/models/<InferenceService name>: it must be the model's name.
    expect(runtime.spec.protocolVersions).toEqual(['v2']);
    expect(service.spec.predictor.model.protocolVersion).toBe('v2');
    expect(service.metadata.name).toBe((await readManifest(DEFAULT_MODEL)).name);
    const { app } = await buildTestApp();
    try {
      const res = await app.inject(`/v2/models/${service.metadata.name}/ready`);
      expect([res.statusCode, res.json()]).toEqual([200, { name: service.metadata.name, ready: true }]);
    } finally {
      await app.close();
    }
  });

  it('the study Job: the CLI and options that exist, the Service it names, its journal on its volume', async () => {
    const [job, claim] = await manifests('study-job.yaml');
    const [service] = await manifests('service.yaml');
    const [deployment] = await manifests('deployment.yaml');
    expect(job!.kind).toBe('Job');
    const pod = job!.spec.template.spec;
    const [node, script, ...args] = pod.containers[0].command as string[];
    expect(node).toBe('node');
    // the image's working directory is the package root, dist/ built (pretest builds it here)
    await access(path.join(ROOT, script!));
    expect(script).toBe('dist/cli/eval.js');
    const known = new Set([
      ...Object.keys(STUDY_OPTIONS),
      ...Object.keys(FLEET_OPTIONS),
      ...['model', 'profile', 'batch', 'threads', 'quick', 'baseline'],
    ]);
    const options = Object.fromEntries(
      args.map((a) => {
        const [name, value] = a.replace(/^--/, '').split('=');
        expect(known, `--${name} is an option of npm run eval`).toContain(name);
        return [name!, value ?? true];
      }),
    );
    // The journal survives the pod: on a mounted volume, and the Job always resumes.
    expect(options['resume']).toBe(true);
    const mount = pod.containers[0].volumeMounts.find((m: Doc) =>
      String(options['journal']).startsWith(m.mountPath + '/'),
    );
    const volume = pod.volumes.find((v: Doc) => v.name === mount.name);
    expect(volume.persistentVolumeClaim.claimName).toBe(claim!.metadata.name);
    expect(pod.restartPolicy).toBe('OnFailure');
    // --endpoint is the Service, on its HTTP port
    const url = new URL(String(options['endpoint']));
    expect(url.hostname).toBe(service!.metadata.name);
    const http = service!.spec.ports.find((p: Doc) => p.name === 'http');
    expect(Number(url.port || 80)).toBe(http.port);
    expect(pod.securityContext.runAsUser).toBe(deployment!.spec.template.spec.securityContext.runAsUser);
    for (const e of pod.containers[0].env as Doc[])
      if (e.name !== 'PREDIFY_API_KEY') expect(CONFIG_VARIABLES).toContain(e.name);
  });

  it('autoscaling on work waiting: a metric the server exports, for the Deployment', async () => {
    const exported = new Set(
      (await createMetrics().registry.getMetricsAsJSON()).map((m) => m.name as string),
    );
    const [deployment] = await manifests('deployment.yaml');
    const [keda] = await manifests('autoscaling/keda.yaml');
    const [adapter, hpa] = await manifests('autoscaling/prometheus-adapter.yaml');
    expect(keda!.spec.scaleTargetRef.name).toBe(deployment!.metadata.name);
    // Both gauges, summed: the images a replica's engine has taken in and those still coming to it.
    const owed = ['predify_engine_in_flight', 'predify_engine_in_transit'];
    const query = keda!.spec.triggers[0].metadata.query as string;
    const named = (text: string) => [...text.matchAll(/\b(predify_\w+)\{/g)].map((m) => m[1]!);
    expect(named(query).sort()).toEqual(owed);
    for (const metric of owed) expect(exported).toContain(metric);
    expect(query).toMatch(/\) \+ sum\(/);
    expect(Number(keda!.spec.triggers[0].metadata.threshold)).toBeGreaterThan(0);
    type Rule = { metricsQuery: string; name: { as: string } };
    const rule = (parse(adapter!.data['config.yaml'] as string) as { rules: Rule[] }).rules[0]!;
    expect(named(rule.metricsQuery).sort()).toEqual(owed);
    expect(hpa!.spec.scaleTargetRef.name).toBe(deployment!.metadata.name);
    expect(hpa!.spec.metrics[0].pods.metric.name).toBe(rule.name.as);
  });

  it('feedback training: decode then an indexed torchrun Job, its rendezvous, options and volume', async () => {
    const [claim, decode, service, train] = await manifests('training/feedback-job.yaml');
    expect([claim!.kind, decode!.kind, service!.kind, train!.kind]).toEqual([
      'PersistentVolumeClaim',
      'Job',
      'Service',
      'Job',
    ]);
    // Every option each step passes is one its command has (their --help lists them).
    const decodeArgs = decode!.spec.template.spec.containers[0].command as string[];
    expect(decodeArgs.slice(0, 2)).toEqual(['node', 'dist/cli/decode-images.js']);
    const decodeHelp = execFileSync(process.execPath, [path.join(ROOT, decodeArgs[1]!), '--help'], {
      encoding: 'utf8',
    });
    const opts = (args: string[]) =>
      Object.fromEntries(
        args
          .filter((a) => a.startsWith('--'))
          .map((a) => {
            const [name, value] = a.slice(2).split('=');
            return [name!, value ?? true];
          }),
      );
    const decoded = opts(decodeArgs);
    for (const name of Object.keys(decoded)) expect(decodeHelp).toContain(`--${name}`);

    const pod = train!.spec.template.spec;
    const command = (pod.containers[0].command as string[])[2]!;
    // the shell's $(...) adds --resume when there is a state to resume from
    const script = command.replace(/\$\([^)]*\)/g, '').split(/\s+/);
    const launcher = opts(
      script.slice(script.indexOf('torchrun'), script.indexOf('scripts/train_feedback.py')),
    );
    const trainer = opts(script.slice(script.indexOf('scripts/train_feedback.py') + 1));
    const trainHelp = execFileSync(
      '/usr/bin/python3',
      [path.join(ROOT, 'scripts/train_feedback.py'), '--help'],
      {
        encoding: 'utf8',
      },
    );
    for (const name of Object.keys(trainer)) expect(trainHelp).toContain(`--${name}`);
    // One pod a node: indexed, all at once, node rank from the index, pod 0 the rendezvous
    // through the headless Service that names the pods.
    expect(train!.spec.completionMode).toBe('Indexed');
    expect(train!.spec.completions).toBe(Number(launcher['nnodes']));
    expect(train!.spec.parallelism).toBe(train!.spec.completions);
    expect(launcher['node_rank']).toBe('$JOB_COMPLETION_INDEX');
    expect(service!.spec.clusterIP).toBe('None');
    expect(pod.subdomain).toBe(service!.metadata.name);
    expect(launcher['master_addr']).toBe(`${train!.metadata.name}-0.${service!.metadata.name}`);
    expect(service!.spec.ports[0].port).toBe(Number(launcher['master_port']));
    expect(service!.spec.selector).toEqual(
      expect.objectContaining(train!.spec.template.metadata.labels as Record<string, string>),
    );
    expect(Number(launcher['nproc_per_node'])).toBe(pod.containers[0].resources.limits['nvidia.com/gpu']);
    // The trainer reads the cache the decode step writes, at the size it decoded, and both write
    // to the claim; a restarted pod resumes from the state there.
    expect(trainer['images']).toBe(decoded['out']);
    expect(decoded['size']).toBe(`${trainer['input-size']}x${trainer['input-size']}`);
    for (const [job, dir] of [
      [decode!, String(decoded['out'])],
      [train!, String(trainer['out'])],
    ] as const) {
      const spec = job.spec.template.spec;
      const mount = (spec.containers[0].volumeMounts as Doc[]).find((m) =>
        dir.startsWith(m.mountPath + '/'),
      )!;
      const volume = (spec.volumes as Doc[]).find((v) => v.name === mount.name)!;
      expect(volume.persistentVolumeClaim.claimName).toBe(claim!.metadata.name);
    }
    expect(claim!.spec.accessModes).toContain('ReadWriteMany');
    expect(command).toContain(`$(test -f ${String(trainer['out'])}/state/last.pt && echo --resume)`);
    // The config is one the image ships (copied from it by the init container).
    await access(path.join(ROOT, String(trainer['config'])));
    expect(torchvisionName(String(trainer['backbone']))).toBe(true);
  });
});
