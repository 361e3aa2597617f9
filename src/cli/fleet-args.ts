/**
 * The command-line side of a study run against servers (--endpoint): its options, the fleet
 * and journal they make, a progress line a person can follow, and the engine a study runs on:
 * the local one or servers.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { modelHash, type Manifest } from '../model/manifest.js';
import type { PredictiveStepper } from '../engine/predictive-step.js';
import { evaluateRemote, type RemoteWork } from '../robustness/evaluate-remote.js';
import { Fleet, FleetError, type FleetOptions } from '../robustness/fleet.js';
import { Journal, JournalError, JOURNAL_FORMAT } from '../robustness/journal.js';
import { clock } from '../robustness/progress.js';
import { localStudy, type StudyEngine } from '../robustness/study-engine.js';
import type { StudyInputs } from '../robustness/study-inputs.js';
import { wholeNumber } from './args.js';

export const FLEET_OPTIONS = {
  endpoint: { type: 'string' },
  journal: { type: 'string' },
  resume: { type: 'boolean', default: false },
  concurrency: { type: 'string' },
  'request-timeout': { type: 'string' },
  'give-up-after': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export const FLEET_USAGE = `  --endpoint URL[,URL...]  classify on these servers (predify-serve, the same model) instead of
                 here: each a server or a Kubernetes Service in front of many; the images are
                 corrupted here. The API key, if the servers need one, from PREDIFY_API_KEY.
  --journal FILE every answer, appended as it comes (default OUT/journal.jsonl)
  --resume       continue the study its journal holds: nothing is classified twice
  --concurrency N  requests in flight per URL (default 4; more for a Service of many replicas)
  --request-timeout S  a request's limit before it is retried elsewhere (default 300)
  --give-up-after S  stop when no server has answered for this long (default 600)`;

export type FleetValues = { [K in keyof typeof FLEET_OPTIONS]?: string | boolean };

export interface FleetStudy<T> {
  fleet: Fleet<T>;
  journal: Journal;
  urls: string[];
}

/** The fleet and the journal of a study with --endpoint; usage errors exit 2. */
export function fleetStudy<T>(
  values: FleetValues,
  study: {
    manifest: Manifest;
    profile: string;
    timesteps: number;
    seed: number;
    images: string;
    out: string;
  },
): FleetStudy<T> {
  const urls = String(values.endpoint)
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  for (const url of urls)
    if (!/^https?:\/\/[^/\s]+/.test(url)) {
      console.error(`--endpoint takes http(s) URLs, comma-separated: '${url}' is not one`);
      process.exit(2);
    }
  if (urls.length === 0) {
    console.error('--endpoint needs at least one URL');
    process.exit(2);
  }
  const { manifest } = study;
  const identity = { name: manifest.name, version: manifest.modelVersion, hash: modelHash(manifest) };
  const apiKey = process.env['PREDIFY_API_KEY'];
  const options: FleetOptions = {
    urls,
    identity,
    ...(apiKey ? { apiKey } : {}),
    timesteps: study.timesteps,
    profile: study.profile,
    inputShape: [manifest.input.channels, manifest.input.height, manifest.input.width],
    concurrency: Math.max(1, wholeNumber('concurrency', values.concurrency as string | undefined, 4)),
    timeoutMs: wholeNumber('request-timeout', values['request-timeout'] as string | undefined, 300) * 1000,
    giveUpMs: wholeNumber('give-up-after', values['give-up-after'] as string | undefined, 600) * 1000,
  };
  const file = (values.journal as string | undefined) ?? path.join(study.out, 'journal.jsonl');
  mkdirSync(path.dirname(file), { recursive: true });
  const journal = Journal.open(
    file,
    {
      format: JOURNAL_FORMAT,
      version: 1,
      model: identity,
      profile: study.profile,
      timesteps: study.timesteps,
      seed: study.seed,
      images: study.images,
    },
    { resume: values.resume === true },
  );
  return { fleet: new Fleet<T>(options), journal, urls };
}

/**
 * Progress of a fleet study on stderr: images done of all, the rate overall and per server,
 * retries, servers set aside, time left. Redrawn in place on a terminal; otherwise a plain
 * line every 10% or every 30 s, whichever comes first.
 */
export function fleetProgress(label: string, fleet: { stats: Fleet<unknown>['stats'] }, perImage: number) {
  const started = performance.now();
  let startDone: number | undefined;
  let lastTenth = -1;
  let lastLine = 0;
  return (done: number, total: number) => {
    startDone ??= done;
    const images = Math.round(done / perImage);
    const all = Math.round(total / perImage);
    const seconds = (performance.now() - started) / 1000;
    const rate = (done - startDone) / perImage / Math.max(seconds, 1e-9);
    const eta = rate > 0 ? (all - images) / rate : NaN;
    const stats = fleet.stats;
    const servers = stats
      .map((s) => `${s.url.replace(/^https?:\/\//, '')} ${s.imagesPerSecond.toFixed(1)}/s`)
      .join(', ');
    const retries = stats.reduce((n, s) => n + s.retries, 0);
    const aside = stats.filter((s) => s.setAside).map((s) => s.url.replace(/^https?:\/\//, ''));
    const line =
      `${label}: ${images}/${all} images (${((done / Math.max(total, 1)) * 100).toFixed(1)}%), ${rate.toFixed(1)} images/s [${servers}], ` +
      `${retries} retries${aside.length ? `, set aside: ${aside.join(', ')}` : ''}, ${clock(seconds)} elapsed, ETA ${Number.isFinite(eta) ? clock(eta) : '?'}`;
    if (process.stderr.isTTY) {
      process.stderr.write(`\r\x1b[2K${line}`);
      if (done >= total) process.stderr.write('\n');
      return;
    }
    const tenth = Math.floor((done / Math.max(total, 1)) * 10);
    if (tenth > lastTenth || done >= total || performance.now() - lastLine > 30_000) {
      lastTenth = tenth;
      lastLine = performance.now();
      process.stderr.write(`${line}\n`);
    }
  };
}

export interface StudyEngineOptions {
  /** the local engine, or none: --endpoint */
  stepper: PredictiveStepper | undefined;
  values: FleetValues;
  manifest: Manifest;
  profile: string;
  study: { seed: number; set: { root: string } };
  inputs: StudyInputs;
  timesteps: number;
  out: string;
}

/**
 * The engine a study runs on: the local one, or with --endpoint servers with a journal. On
 * servers, exits 2 for a journal that cannot be used and 1 for a fleet that cannot go on
 * (mixed versions, nobody answering), each with its message; the journal keeps what was done.
 */
export function studyEngine(o: StudyEngineOptions): StudyEngine {
  if (o.stepper) return localStudy(o.stepper, o.inputs);
  let fleet: FleetStudy<RemoteWork>;
  try {
    fleet = fleetStudy<RemoteWork>(o.values, {
      manifest: o.manifest,
      profile: o.profile,
      timesteps: o.timesteps,
      seed: o.study.seed,
      images: o.study.set.root,
      out: o.out,
    });
  } catch (err) {
    if (!(err instanceof JournalError)) throw err;
    console.error(err.message);
    process.exit(2);
  }
  return {
    run: async (groups, { timesteps, batch, label }) => {
      const { journal } = fleet;
      console.error(
        `on ${fleet.urls.join(', ')}; journal ${journal.file}` +
          (journal.records.size ? ` (resuming: ${journal.records.size} answers in it)` : '') +
          (journal.droppedLine ? '; its last line was cut short by a kill and is dropped' : ''),
      );
      try {
        await fleet.fleet.checkAll();
        const results = await evaluateRemote(fleet.fleet, journal, o.inputs, groups, {
          timesteps,
          batch,
          onProgress: fleetProgress(label, fleet.fleet, timesteps + 1),
        });
        return {
          results,
          // this run's answers by server (a resumed run counts what it asked for itself)
          endpoints: fleet.fleet.stats.map((e) => ({
            url: e.url,
            images: e.answered,
            imagesPerSecond: Math.round(e.imagesPerSecond * 10) / 10,
            retries: e.retries,
          })),
          journal: journal.file,
        };
      } catch (err) {
        if (!(err instanceof FleetError)) throw err;
        console.error(`\n${err.message}`);
        process.exit(1);
      } finally {
        journal.close();
      }
    },
  };
}
