/**
 * npm run eval:adversarial: scores scripts/attack.py's adversarial images through the serving
 * engine (robustness/adversarial-study.ts) and writes results.json, results.md and the charts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { gradientScales } from '../engine/profiles.js';
import { openStepper } from '../engine/open-stepper.js';
import { coefficientsOf } from '../model/hyperparameters.js';
import { loadModel, type LoadedModel } from '../model/load-model.js';
import {
  adversarialStudy,
  readAttackRun,
  type ArmEngine,
  type AttackRun,
} from '../robustness/adversarial-study.js';
import { svgToPng } from '../robustness/chart.js';
import { untrainedFeedbackControl } from '../robustness/controls.js';
import { ImageSetError } from '../robustness/image-set.js';
import { parseCli, wholeNumber } from './args.js';

const usage = `usage: npm run eval:adversarial -- RUN [--control RUN ...] [options]

Scores the adversarial images of RUN (made by scripts/attack.py) through the serving engine at
t = 0..T: accuracy and target success at every t with 95% paired bootstrap intervals, against
clean and against t = 0, the served default answer, and the corruption score's AUROC.

  --control RUN   a control's run on the same images (attack.py --control no-feedback-term,
                  --control no-error-gradient, or the untrained-feedback model's run); repeat
  --model DIR     the model directory, when it is no longer where RUN says (attack.json)
  --out DIR       where the results go (default build/adversarial/<model>-<profile>)
  --batch N       images stepped together (default 32)
  --threads N     onnxruntime threads (default 2)`;

const { values, positionals } = parseCli(
  {
    allowPositionals: true,
    options: {
      control: { type: 'string', multiple: true },
      model: { type: 'string' },
      out: { type: 'string' },
      batch: { type: 'string' },
      threads: { type: 'string' },
      help: { type: 'boolean' },
    },
  },
  usage,
);

function refuse(message: string): never {
  console.error(`eval:adversarial: ${message}\n\n${usage}`);
  process.exit(2);
}

if (positionals.length !== 1) refuse('name one attack run (scripts/attack.py --out RUN)');
const batch = Math.max(1, wholeNumber('batch', values.batch, 32));
const threads = wholeNumber('threads', values.threads, 2);

const opened: LoadedModel[] = [];
try {
  const runs: AttackRun[] = [];
  for (const dir of [positionals[0]!, ...(values.control ?? [])]) runs.push(await readAttackRun(dir));
  const modelDir = (run: AttackRun, k: number) => {
    const dir = k === 0 && values.model ? values.model : run.record.model.dir;
    if (!existsSync(dir))
      throw new ImageSetError(`${run.dir}: its model ${dir} is not there${k === 0 ? ' (--model DIR)' : ''}`);
    return dir;
  };
  const byDir = new Map<string, { model: LoadedModel; stepper: ArmEngine['stepper'] }>();
  const open = async (dir: string) => {
    const key = path.resolve(dir);
    let found = byDir.get(key);
    if (!found) {
      const model = await loadModel(
        dir,
        { providers: ['cpu'], intraOpThreads: threads },
        pino({ level: 'warn' }),
      );
      opened.push(model);
      byDir.set(key, (found = { model, stepper: openStepper(model) }));
    }
    return found;
  };
  const arms: { run: AttackRun; engine: ArmEngine }[] = [];
  for (const [k, run] of runs.entries()) {
    const dir = modelDir(run, k);
    const { model, stepper } = await open(dir);
    const manifest = model.manifest;
    if (k > 0 && path.resolve(dir) !== path.resolve(modelDir(runs[0]!, 0)))
      // another model directory: only the same network with other (untrained) feedback
      untrainedFeedbackControl(
        model,
        stepper,
        arms[0]!.engine.manifest,
        runs[0]!.record.hyperparameters,
        dir,
      );
    if (run.record.hyperparameters.length !== manifest.pcoders.length)
      throw new ImageSetError(
        `${run.dir}: ${run.record.hyperparameters.length} hyperparameter sets for ${manifest.pcoders.length} PCoders`,
      );
    arms.push({
      run,
      engine: {
        stepper,
        manifest,
        coefficients: coefficientsOf(run.record.hyperparameters, gradientScales(manifest)),
      },
    });
  }
  const started = performance.now();
  const outcome = await adversarialStudy({
    runs: arms,
    batch,
    onProgress: (line) => console.error(`eval:adversarial: ${line}`),
  });
  const out =
    values.out ?? path.join('build', 'adversarial', `${outcome.json.model}-${outcome.json.profile}`);
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'results.json'), JSON.stringify(outcome.json, null, 1) + '\n');
  await writeFile(path.join(out, 'results.md'), outcome.markdown + '\n');
  for (const [name, svg] of Object.entries(outcome.charts)) {
    await writeFile(path.join(out, name), svg);
    await writeFile(path.join(out, name.replace(/\.svg$/, '.png')), await svgToPng(svg));
  }
  console.log(outcome.markdown);
  console.log(
    `\nwrote ${out}/results.json, results.md and ${Object.keys(outcome.charts).length} charts in ${((performance.now() - started) / 1000).toFixed(1)}s`,
  );
} catch (err) {
  if (!(err instanceof ImageSetError)) throw err;
  console.error(`eval:adversarial: ${err.message}`);
  process.exitCode = 2;
} finally {
  for (const m of opened) await m.release();
}
