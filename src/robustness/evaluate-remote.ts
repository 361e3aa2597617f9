/**
 * The study of evaluate.ts, with each image classified by servers instead of the local engine:
 * the images are decoded and corrupted here (so that any server of the model can answer any
 * condition), sent to a Fleet, and every answer goes to the study's Journal before it counts.
 * The results are built from the journal, in the order evaluate() makes them, so a run that was
 * interrupted and resumed reports exactly what an uninterrupted one does.
 */
import type { StepReading } from '../engine/settling.js';
import { resultsFromReadings, studySize, type ConditionResult, type StudyGroup } from './evaluate.js';
import type { Fleet, WorkItem } from './fleet.js';
import type { StudyImage } from './image-set.js';
import { recordKey, type Journal } from './journal.js';
import type { Condition, OpenImage, StudyInputs } from './study-inputs.js';

export interface RemoteOptions {
  timesteps: number;
  /** images per request */
  batch: number;
  /** sample-timesteps answered so far (the journal's included), of `total` */
  onProgress?: (done: number, total: number) => void;
}

/** What a request of a remote study carries: images of one condition. */
export interface RemoteWork {
  condition: Condition;
  images: StudyImage[];
}

const keyOf = (image: StudyImage, c: Condition) => recordKey(image.id, c.corruption, c.severity);

export async function evaluateRemote(
  fleet: Fleet<RemoteWork>,
  journal: Journal,
  inputs: StudyInputs,
  groups: readonly StudyGroup[],
  { timesteps, batch, onProgress }: RemoteOptions,
): Promise<ConditionResult[]> {
  const total = studySize(groups, timesteps);
  const perImage = timesteps + 1;
  let done = 0;
  for (const g of groups)
    for (const c of g.conditions)
      for (const image of g.images) if (journal.records.has(keyOf(image, c))) done += perImage;
  onProgress?.(done, total);

  // The work, chunk by chunk of images, each image decoded once for all its conditions.
  async function* chunks(): AsyncGenerator<WorkItem<RemoteWork>[]> {
    for (const group of groups) {
      for (let start = 0; start < group.images.length; start += batch) {
        const chunk = group.images.slice(start, start + batch);
        const missing = (c: Condition) => chunk.filter((image) => !journal.records.has(keyOf(image, c)));
        if (group.conditions.every((c) => missing(c).length === 0)) continue;
        const opened = (await Promise.all(chunk.map((image) => inputs.open(image)))).filter(
          (o): o is OpenImage => o !== undefined,
        );
        // Unreadable images are never sent: they count as done, as evaluate() counts them.
        const unreadable = chunk.length - opened.length;
        if (unreadable > 0) {
          done += unreadable * group.conditions.length * perImage;
          onProgress?.(done, total);
        }
        const items: WorkItem<RemoteWork>[] = [];
        for (const condition of group.conditions) {
          const todo = new Set(missing(condition).map((i) => i.id));
          const os = opened.filter((o) => todo.has(o.image.id));
          if (os.length === 0) continue;
          const tensors = group.asIs ? os.map((o) => o.clean) : await inputs.inputs(os, condition);
          items.push({ tensors, tag: { condition, images: os.map((o) => o.image) } });
        }
        yield items;
      }
    }
  }
  const source = chunks();
  await fleet.run(
    async () => {
      const next = await source.next();
      return next.done ? undefined : next.value;
    },
    (item, answers) => {
      const { condition, images } = item.tag;
      answers.forEach((steps, n) => {
        const image = images[n]!;
        const record = {
          image: image.id,
          corruption: condition.corruption,
          severity: condition.severity,
          top: steps.map((s) => s.top),
          confidence: steps.map((s) => s.confidence),
          errors: steps.map((s) => Array.from(s.errors)),
        };
        journal.append(record);
        journal.records.set(keyOf(image, condition), record);
      });
      done += answers.length * perImage;
      onProgress?.(done, total);
    },
  );
  journal.sync();

  // The report, from the journal alone.
  return resultsFromReadings(groups, timesteps, true, (image, condition) => {
    const r = journal.records.get(keyOf(image, condition));
    if (!r) return undefined;
    if (r.top.length !== timesteps + 1)
      throw new Error(`the journal's record of ${image.id} has ${r.top.length} steps, not ${timesteps + 1}`);
    return r.top.map((top, t): StepReading => ({
      top,
      confidence: r.confidence[t]!,
      errors: Float32Array.from(r.errors[t]!),
    }));
  });
}
