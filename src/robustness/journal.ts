/**
 * A study's journal: every answer a server gave, one JSON line each, appended as it comes and
 * written through to the file before the next, so that a study killed at any moment resumes
 * where it was (--resume) and never classifies an image under a condition twice. The report is
 * built from the journal alone, so it is the same whether the run was interrupted or not.
 *
 * The first line says what the journal is for (model, its version and hash, profile,
 * timesteps, corruption seed, images); a journal for anything else is refused, not mixed in.
 * A last line cut short by a kill is dropped (and cut from the file); a damaged line before
 * the last means the file was edited, and is refused.
 */
import { closeSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeSync, existsSync } from 'node:fs';

export const JOURNAL_FORMAT = 'predify-serve/study-journal';

export interface JournalHeader {
  format: typeof JOURNAL_FORMAT;
  version: 1;
  model: { name: string; version: string; hash: string };
  profile: string;
  timesteps: number;
  /** the corruptions' seed */
  seed: number;
  /** the image set's root, as given */
  images: string;
}

/** One image under one condition: what each timestep's answer was, as the replay reads it. */
export interface JournalRecord {
  image: string;
  corruption: string;
  severity: number;
  /** top-1 class at t = 0..T */
  top: number[];
  /** its softmax probability */
  confidence: number[];
  /** each PCoder's error e_i(t) */
  errors: number[][];
}

export const recordKey = (image: string, corruption: string, severity: number) =>
  `${corruption}/${severity}/${image}`;

export class JournalError extends Error {}

export class Journal {
  readonly file: string;
  readonly #fd: number;
  /** what the file held when it was opened, by recordKey */
  readonly records: Map<string, JournalRecord>;
  /** a last line cut short by a kill, dropped when the journal was opened */
  readonly droppedLine: boolean;
  #sinceSync = 0;

  private constructor(file: string, fd: number, records: Map<string, JournalRecord>, dropped: boolean) {
    this.file = file;
    this.#fd = fd;
    this.records = records;
    this.droppedLine = dropped;
  }

  /**
   * Starts `file` for `header`, or with `resume` continues it. A file already there without
   * `resume`, or one started for other settings, is refused with what differs.
   */
  static open(file: string, header: JournalHeader, { resume }: { resume: boolean }): Journal {
    if (!existsSync(file)) {
      const fd = openSync(file, 'a');
      writeSync(fd, JSON.stringify(header) + '\n');
      fsyncSync(fd);
      return new Journal(file, fd, new Map(), false);
    }
    if (!resume)
      throw new JournalError(
        `the journal ${file} already exists: add --resume to continue that study, or name another --journal`,
      );
    const text = readFileSync(file, 'utf8');
    const lines = text.split('\n');
    // A complete file ends with a newline: the last element is then ''.
    const tail = lines.pop()!;
    let keep = text.length - tail.length;
    let dropped = tail !== '';
    let started: unknown;
    try {
      started = JSON.parse(lines[0] ?? '');
    } catch {
      throw new JournalError(`${file} is not a study journal (its first line is not JSON)`);
    }
    const differences = headerDifferences(started, header);
    if (differences.length > 0)
      throw new JournalError(
        `the journal ${file} was started for another study (${differences.join('; ')}): ` +
          'name another --journal, or run with the settings it was started with',
      );
    const records = new Map<string, JournalRecord>();
    for (let n = 1; n < lines.length; n++) {
      let record: JournalRecord;
      try {
        record = JSON.parse(lines[n]!) as JournalRecord;
        if (typeof record.image !== 'string' || !Array.isArray(record.top)) throw new Error('not a record');
      } catch {
        // Only the last line can be cut short by a kill; one before it was damaged otherwise.
        if (n === lines.length - 1 && !dropped) {
          dropped = true;
          keep -= lines[n]!.length + 1;
          continue;
        }
        throw new JournalError(`${file}: line ${n + 1} is damaged (not a whole record)`);
      }
      records.set(recordKey(record.image, record.corruption, record.severity), record);
    }
    const fd = openSync(file, 'r+');
    if (dropped) ftruncateSync(fd, Buffer.byteLength(text.slice(0, keep)));
    closeSync(fd);
    return new Journal(file, openSync(file, 'a'), records, dropped);
  }

  /** Appends one answer; it is in the file (the OS's) before this returns. */
  append(record: JournalRecord): void {
    writeSync(this.#fd, JSON.stringify(record) + '\n');
    // Through to the disk now and then too: a killed process loses nothing written, a machine
    // that stops loses at most this many.
    if (++this.#sinceSync >= 256) this.sync();
  }

  sync(): void {
    fsyncSync(this.#fd);
    this.#sinceSync = 0;
  }

  close(): void {
    this.sync();
    closeSync(this.#fd);
  }
}

function headerDifferences(started: unknown, header: JournalHeader): string[] {
  const s = started as Partial<JournalHeader> | null;
  if (!s || s.format !== JOURNAL_FORMAT) return ['it is not a study journal'];
  const out: string[] = [];
  const compare = (what: string, a: unknown, b: unknown) => {
    if (JSON.stringify(a) !== JSON.stringify(b))
      out.push(`${what} ${JSON.stringify(a)}, now ${JSON.stringify(b)}`);
  };
  compare('model', s.model?.name, header.model.name);
  compare('model version', s.model?.version, header.model.version);
  compare('model hash', s.model?.hash, header.model.hash);
  compare('profile', s.profile, header.profile);
  compare('timesteps', s.timesteps, header.timesteps);
  compare('seed', s.seed, header.seed);
  compare('images', s.images, header.images);
  return out;
}
