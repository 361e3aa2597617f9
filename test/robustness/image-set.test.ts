/**
 * Image sets as users hold them: an ImageFolder matched to the model's labels by name, by index
 * or through a class map (JSON, ImageNet's class index, CSV), ImageNet-C's release layout, and
 * Fashion-MNIST; and every refusal, before any work, naming what it refuses.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FASHION_MNIST, matchClasses, readClassMap, readImageSet } from '../../src/robustness/image-set.js';
import { ROOT, SAMPLES } from '../paths.js';

const LABELS = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];
const SAMPLE = path.join(SAMPLES, '0017-coat.png');

let dir: string;
beforeAll(async () => (dir = await mkdtemp(path.join(tmpdir(), 'image-set-'))));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Lays out files (paths relative to a new directory) copied from one sample image. */
async function tree(name: string, files: string[]): Promise<string> {
  const root = path.join(dir, name);
  for (const f of files) {
    await mkdir(path.dirname(path.join(root, f)), { recursive: true });
    if (f.endsWith('.txt')) await writeFile(path.join(root, f), 'notes');
    else await copyFile(SAMPLE, path.join(root, f));
  }
  return root;
}

describe('an ImageFolder', () => {
  it('matches folders to labels by name (case and punctuation aside) or by index, images by name in order', async () => {
    const root = await tree('folder', [
      't-shirt_top/b.png',
      't-shirt_top/a.jpg',
      'Coat/x.png',
      '8/bag.png',
      'Coat/notes.txt',
    ]);
    const set = await readImageSet(root, { labels: LABELS });
    expect(set.layout).toBe('imagefolder');
    expect(set.classes).toEqual([
      { folder: '8', label: 8, by: 'index' },
      { folder: 'Coat', label: 4, by: 'name' },
      { folder: 't-shirt_top', label: 0, by: 'name' },
    ]);
    expect(set.clean.map((i) => [i.id, i.label])).toEqual([
      ['8/bag.png', 8],
      ['Coat/x.png', 4],
      ['t-shirt_top/a.jpg', 0],
      ['t-shirt_top/b.png', 0],
    ]);
    expect(set.ignored).toEqual(['Coat/notes.txt']);
    expect((await readImageSet(root, { labels: LABELS, perClass: 1 })).clean).toHaveLength(3);
  });

  it('takes a class map as JSON, as ImageNet class index JSON, or as CSV', async () => {
    const json = path.join(dir, 'map.json');
    await writeFile(json, JSON.stringify({ n0001: 'Coat', n0002: 9 }));
    const index = path.join(dir, 'index.json');
    await writeFile(index, JSON.stringify({ 4: ['n0001', 'coat'], 9: ['n0002', 'boot'] }));
    const csv = path.join(dir, 'map.csv');
    await writeFile(csv, 'folder,label\nn0001,Coat\nn0002,"Ankle boot"\n');
    for (const file of [json, index, csv]) {
      const map = await readClassMap(file);
      expect(
        matchClasses(['n0001', 'n0002'], LABELS, map).map((c) => c.label),
        file,
      ).toEqual([4, 9]);
    }
  });

  it.each([
    [
      ['Coats/a.png'],
      /class folder matching no label of the model: Coats\. Name folders after the model's labels/,
    ],
    [['a.png'], /no class folders \(it holds 1 images directly/],
    [['Coat/notes.txt'], /no images \(files ending .jpg/],
  ])('refuses %j, naming the problem', async (files, message) => {
    const root = await tree(`bad-${files.join('-').replace(/\W/g, '')}`, files);
    await expect(readImageSet(root, { labels: LABELS })).rejects.toThrow(message);
  });

  it('refuses a folder the class map misses or maps to no label, and a directory that is not there', async () => {
    const root = await tree('mapped', ['n0001/a.png', 'n0003/a.png']);
    const map = new Map<string, string | number>([
      ['n0001', 'Coat'],
      ['n0003', 'Jacket'],
    ]);
    await expect(readImageSet(root, { labels: LABELS, classMap: map })).rejects.toThrow(
      /n0003 -> Jacket \(no such label\)\. Add them to the class map/,
    );
    await expect(readImageSet(path.join(dir, 'nowhere'), { labels: LABELS })).rejects.toThrow(
      /nowhere: no such directory/,
    );
  });
});

describe("ImageNet-C's release layout", () => {
  it('reads DIR/<corruption>/<severity>/<class>/<image>, and clean images from DIR/clean/<class>/', async () => {
    const root = await tree('inc', [
      'fog/3/Coat/a.png',
      'fog/5/Coat/a.png',
      'contrast/1/Bag/b.png',
      'clean/Coat/a.png',
    ]);
    const set = await readImageSet(root, { labels: LABELS });
    expect(set.layout).toBe('imagenet-c');
    expect([...set.corrupted!.keys()].sort()).toEqual(['contrast', 'fog']);
    expect([...set.corrupted!.get('fog')!.keys()]).toEqual([3, 5]);
    expect(
      set
        .corrupted!.get('contrast')!
        .get(1)!
        .map((i) => [i.id, i.label]),
    ).toEqual([['contrast/1/Bag/b.png', 8]]);
    expect(set.clean.map((i) => i.id)).toEqual(['clean/Coat/a.png']);
  });

  it('refuses a folder that is no corruption and a severity outside 1..5', async () => {
    const stranger = await tree('inc-bad', ['fog/3/Coat/a.png', 'haze/3/Coat/a.png']);
    await expect(readImageSet(stranger, { labels: LABELS })).rejects.toThrow(
      /but haze is not a corruption: the corruptions are gaussian_noise/,
    );
    const severity = await tree('inc-sev', ['fog/3/Coat/a.png', 'fog/6/Coat/a.png']);
    await expect(readImageSet(severity, { labels: LABELS })).rejects.toThrow();
  });
});

describe('Fashion-MNIST', () => {
  it('takes the first images of each class in a range of a split', async () => {
    const set = await readImageSet(FASHION_MNIST, {
      labels: LABELS,
      perClass: 3,
      fashion: { split: 'train', from: 50_000, to: 60_000 },
    });
    expect(set.clean).toHaveLength(30);
    expect(set.clean.every((i) => Number(i.id.split('/').at(-1)) >= 50_000)).toBe(true);
    for (let label = 0; label < 10; label++)
      expect(set.clean.filter((i) => i.label === label)).toHaveLength(3);
  });

  it("splits the test set into a dev and a final part: each class's first and last 500 images", async () => {
    const read = (part: 'dev' | 'final') =>
      readImageSet(FASHION_MNIST, { labels: LABELS, fashion: { split: 't10k', part } });
    const [dev, final] = [await read('dev'), await read('final')];
    expect([dev.clean.length, final.clean.length]).toEqual([5000, 5000]);
    const index = (i: { id: string }) => Number(i.id.split('/').at(-1));
    const devIds = new Set(dev.clean.map(index));
    expect(final.clean.some((i) => devIds.has(index(i)))).toBe(false);
    for (let label = 0; label < 10; label++) {
      const lastDev = Math.max(...dev.clean.filter((i) => i.label === label).map(index));
      const firstFinal = Math.min(...final.clean.filter((i) => i.label === label).map(index));
      expect(lastDev).toBeLessThan(firstFinal);
    }
    // the studies' default 60 a class come from the dev part: the first 60 of each class
    const sixty = await readImageSet(FASHION_MNIST, {
      labels: LABELS,
      perClass: 60,
      fashion: { split: 't10k', part: 'final' },
    });
    expect(sixty.clean.every((i) => !devIds.has(index(i)))).toBe(true);
  });
});

describe('npm run eval on what npm run corrupt wrote', () => {
  it("reads ImageNet-C's layout and reports every condition it holds, with mCE", async () => {
    const images = await tree('for-corrupt', ['Coat/a.png', 'Ankle boot/b.png']);
    const out = path.join(dir, 'corrupted');
    const node = (cli: string, args: string[]) =>
      promisify(execFile)('node', [path.join(ROOT, 'dist', 'cli', cli), ...args]);
    await node('corrupt.js', [
      '--images',
      images,
      '--out',
      out,
      '--corruptions',
      'fog,gaussian_noise',
      '--severities',
      '2,4',
    ]);
    const report = path.join(dir, 'eval');
    const { stderr } = await node('eval.js', ['--images', out, '--timesteps', '1', '--out', report]);
    expect(stderr).toMatch(/no clean images/);
    const results = JSON.parse(
      await (await import('node:fs/promises')).readFile(path.join(report, 'results.json'), 'utf8'),
    );
    expect(results.images.layout).toBe('imagenet-c');
    expect(Object.keys(results.corruptions).sort()).toEqual(['fog', 'gaussian_noise']);
    expect(Object.keys(results.corruptions.fog)).toEqual(['2', '4']);
    expect(results.corruptions.fog['2'].count).toBe(2);
    expect(results.corruptions.fog['2'].accuracy).toHaveLength(2);
    expect(results.mce.relative[0]).toBe(1);
    expect(results.mce.interval95).toHaveLength(2);
    expect(results.mce.all.relative[0]).toBe(1);
    // every change against t = 0 carries its interval, which brackets it
    for (const series of [
      results.changesAgainstT0.corruptedMean,
      ...Object.values(results.changesAgainstT0.families),
      ...Object.values(results.changesAgainstT0.corruptions),
    ] as { change: number; interval95: [number, number] }[][]) {
      expect(series).toHaveLength(2);
      for (const { change, interval95 } of series) {
        expect(interval95[0]).toBeLessThanOrEqual(change + 1e-9);
        expect(interval95[1]).toBeGreaterThanOrEqual(change - 1e-9);
      }
    }
    expect(results.changesAgainstT0.clean).toBeUndefined();
    expect(results.clean).toBeNull();
  }, 60_000);
});
