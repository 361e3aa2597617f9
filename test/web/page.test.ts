/**
 * The page at GET /, in a real browser: Debian's Chromium driven by playwright-core (its own
 * browser download does not work on our machines). A sample image is uploaded; the chart must
 * fill in one timestep at a time as the events stream, and end showing what the API answers
 * for the same image. The page, and the Swagger UI at /docs, must run under the service's
 * Content-Security-Policy without a console error.
 */
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildTestApp } from '../helpers.js';
import { DEFAULT_MODEL, PAPER_MODELS, REPORTS, SAMPLES, TEST_MODELS } from '../paths.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const SAMPLE = path.join(SAMPLES, '0000-ankle-boot.png');
const TIMESTEPS = 6;

let app: FastifyInstance;
let browser: Browser;
let page: Page;
let base: string;
const problems: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: run scripts/setup-debian.sh (or set CHROMIUM_PATH)`);
  ({ app } = await buildTestApp());
  base = await app.listen({ port: 0, host: '127.0.0.1' });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 820, height: 1000 } });
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  page.on('pageerror', (e) => problems.push(String(e)));
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await app?.close();
});

it('uploading a sample streams its classification into the chart', async () => {
  await page.goto(base + '/');
  await expect.poll(() => page.textContent('#model')).toContain('fashion-pc');
  expect(await page.locator('#profile option').count()).toBeGreaterThan(0);
  // Fixed timesteps, whatever the default profile's requests get by default.
  await page.setChecked('#auto', false);
  await page.fill('#timesteps', String(TIMESTEPS));
  const profile = await page.inputValue('#profile');

  // Record every size the chart takes: one more timestep at a time, not all at the end. Each
  // change leaves a record with the value before it, even when the observer sees several at once.
  await page.evaluate(() => {
    const chart = document.getElementById('chart')!;
    const w = window as unknown as { before: (string | null)[]; chart: HTMLElement };
    w.before = [];
    w.chart = chart;
    new MutationObserver((records) => w.before.push(...records.map((r) => r.oldValue))).observe(chart, {
      attributes: true,
      attributeFilter: ['data-steps'],
      attributeOldValue: true,
    });
  });
  await page.setInputFiles('#file', SAMPLE);
  await expect.poll(() => page.textContent('#result'), { timeout: 20_000 }).toMatch(/after 6 timesteps/);

  const sizes = await page.evaluate(() => {
    const w = window as unknown as { before: (string | null)[]; chart: HTMLElement };
    return [...w.before.slice(1), w.chart.dataset['steps']];
  });
  expect(sizes).toEqual(['1', '2', '3', '4', '5', '6', '7']);

  // The reference: what the API answers for the same image and settings.
  const api = (
    await app.inject({
      method: 'POST',
      url: `/classify?timesteps=${TIMESTEPS}&profile=${profile}&topk=10`,
      headers: { 'content-type': 'image/png' },
      payload: await readFile(SAMPLE),
    })
  ).json();
  const { label, confidence } = api.prediction;
  expect(await page.textContent('#result')).toContain(`${label}: ${(confidence * 100).toFixed(1)}%`);
  expect(await page.textContent('#legend')).toContain(`${label}: ${(confidence * 100).toFixed(1)}%`);
  // The corruption score next to it, as the API gives it: a clean sample reads as clean.
  expect(await page.textContent('#score')).toBe(
    `Corruption score ${api.corruptionScore.toFixed(2)}: like clean images`,
  );

  // Three classes over 7 timesteps; one error line per PCoder.
  const lines = page.locator('#chart polyline');
  expect(await lines.count()).toBe(3);
  for (const line of await lines.all())
    expect((await line.getAttribute('points'))!.split(' ')).toHaveLength(TIMESTEPS + 1);
  const errors = page.locator('#errors polyline');
  expect(await errors.count()).toBe(Object.keys(api.steps[0].errors).length);
  expect(await page.textContent('#errors-legend')).toContain('pcoder1');

  await mkdir(REPORTS, { recursive: true });
  await page.screenshot({ path: path.join(REPORTS, 'page.png'), fullPage: true });
  expect(problems).toEqual([]);
}, 60_000);

it('adds seeded noise in the browser when asked, and shows what the API answers for that image', async () => {
  await page.fill('#timesteps', String(TIMESTEPS));
  await page.selectOption('#noise', '0.3');
  await expect.poll(() => page.textContent('#status'), { timeout: 20_000 }).toMatch(/noise σ 0\.3 added/);
  // The preview shows what was sent, the noisy image: its pixels, as a (lossless) PNG.
  const dataUrl = await page.evaluate(() => {
    const preview = document.getElementById('preview') as HTMLImageElement;
    const canvas = document.createElement('canvas');
    canvas.width = preview.naturalWidth;
    canvas.height = preview.naturalHeight;
    canvas.getContext('2d')!.drawImage(preview, 0, 0);
    return canvas.toDataURL('image/png');
  });
  const body = Buffer.from(dataUrl.split(',')[1]!, 'base64');
  const original = await readFile(SAMPLE);
  const clean = await sharp(original).raw().toBuffer();
  expect((await sharp(body).greyscale().raw().toBuffer()).equals(clean)).toBe(false);
  const api = (
    await app.inject({
      method: 'POST',
      url: `/classify?timesteps=${TIMESTEPS}&profile=${await page.inputValue('#profile')}`,
      headers: { 'content-type': 'image/png' },
      payload: body,
    })
  ).json();
  const { label, confidence } = api.prediction;
  await page.screenshot({ path: path.join(REPORTS, 'page-noise.png'), fullPage: true });
  expect(await page.textContent('#result')).toContain(`${label}: ${(confidence * 100).toFixed(1)}%`);
  expect(problems).toEqual([]);
}, 60_000);

it("runs until settled when asked, and shows where the API's anytime answer stops", async () => {
  await page.selectOption('#noise', '0');
  await page.setChecked('#auto', true); // a change of the box classifies again
  await expect.poll(() => page.textContent('#result'), { timeout: 20_000 }).toMatch(/settled|not iterated/);
  const cap = await page.inputValue('#timesteps');
  const api = (
    await app.inject({
      method: 'POST',
      url: `/classify?timesteps=auto&max_timesteps=${cap}&profile=${await page.inputValue('#profile')}`,
      headers: { 'content-type': 'image/png' },
      payload: await readFile(SAMPLE),
    })
  ).json();
  // A clean sample under the calibrated rule: settled, or not iterated at all below its gate.
  expect(['settled', 'gated']).toContain(api.stop.reason);
  expect(await page.textContent('#result')).toContain(
    api.stop.reason === 'settled'
      ? `after ${api.timesteps} timesteps, settled`
      : `after 0 timesteps, not iterated: its errors look clean (the profile iterates only above z = ${api.stop.gate})`,
  );
  expect(await page.getAttribute('#chart', 'data-steps')).toBe(String(api.timesteps + 1));
  await page.setChecked('#auto', false);
  expect(problems).toEqual([]);
}, 60_000);

it('says what went wrong when the server refuses the image', async () => {
  await page.setInputFiles('#file', {
    name: 'notes.txt',
    mimeType: 'text/plain',
    buffer: Buffer.from('hello'),
  });
  await expect.poll(() => page.textContent('#status')).toMatch(/^415: /);
  expect(await page.getAttribute('#status', 'class')).toContain('error');
});

it('lets the user choose among the models of a repository', async () => {
  const repo = await mkdtemp(path.join(tmpdir(), 'predify-page-repo-'));
  await cp(DEFAULT_MODEL, path.join(repo, 'a'), { recursive: true });
  await cp(path.join(TEST_MODELS, PAPER_MODELS[1]!.name), path.join(repo, 'b'), { recursive: true });
  const { app: served } = await buildTestApp({ MODEL_DIR: repo });
  const other = await browser.newPage();
  try {
    await other.goto((await served.listen({ port: 0, host: '127.0.0.1' })) + '/');
    await expect.poll(() => other.textContent('#model')).toContain('fashion-pc');
    expect(await other.locator('#model-choice option').allTextContents()).toEqual([
      'fashion-pc',
      'pefficientnet-b0',
    ]);
    await other.selectOption('#model-choice', 'pefficientnet-b0');
    await expect.poll(() => other.textContent('#model')).toContain('pefficientnet-b0');
    await other.fill('#timesteps', '2');
    await other.setInputFiles('#file', SAMPLE);
    await expect
      .poll(() => other.textContent('#status'), { timeout: 20_000 })
      .toContain('pefficientnet-b0, profile');
    const api = (
      await served.inject({
        method: 'POST',
        url: `/classify?timesteps=2&model=pefficientnet-b0&topk=10`,
        headers: { 'content-type': 'image/png' },
        payload: await readFile(SAMPLE),
      })
    ).json();
    const { label, confidence } = api.prediction;
    expect(await other.textContent('#result')).toContain(`${label}: ${(confidence * 100).toFixed(1)}%`);
  } finally {
    await other.close();
    await served.close();
    await rm(repo, { recursive: true, force: true });
  }
}, 60_000);

it('the API documentation at /docs renders every operation, under the same policy', async () => {
  const docs = await browser.newPage();
  const errors: string[] = [];
  docs.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  docs.on('pageerror', (e) => errors.push(String(e)));
  await docs.goto(base + '/docs');
  await expect.poll(() => docs.locator('.opblock').count(), { timeout: 20_000 }).toBeGreaterThan(10);
  expect(await docs.locator('[data-path="/v2/models/{name}/infer"]').count()).toBeGreaterThan(0);
  expect(errors).toEqual([]);
  await docs.close();
}, 60_000);
