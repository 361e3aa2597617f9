/** /metrics exposes what the benchmarks and operators need, in Prometheus text format. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildTestApp } from '../helpers.js';
import { SAMPLES } from '../paths.js';

const value = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : undefined;
};

describe('GET /metrics', () => {
  it('counts requests, timesteps and batch sizes after classifications', async () => {
    const { app } = await buildTestApp();
    const image = await readFile(path.join(SAMPLES, '0001-pullover.png'));
    for (const t of [2, 5]) {
      const res = await app.inject({
        method: 'POST',
        url: `/classify?timesteps=${t}`,
        headers: { 'content-type': 'image/png' },
        payload: image,
      });
      expect(res.statusCode).toBe(200);
    }
    await app.inject('/nope');
    const res = await app.inject('/metrics');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const text = res.body;
    expect(value(text, 'predify_http_requests_total{route="/classify",method="POST",status="200"}')).toBe(2);
    expect(value(text, 'predify_http_requests_total{route="unmatched",method="GET",status="404"}')).toBe(1);
    // (2 + 1) + (5 + 1) sample-timesteps, each request alone in its batch
    expect(value(text, 'predify_timesteps_total')).toBe(9);
    expect(value(text, 'predify_batch_size_count')).toBe(9);
    expect(value(text, 'predify_batch_size_sum')).toBe(9);
    expect(value(text, 'predify_queue_wait_seconds_count')).toBe(2);
    expect(value(text, 'predify_inference_seconds_count')).toBe(2);
    expect(value(text, 'predify_requested_timesteps_sum')).toBe(7);
    expect(value(text, 'predify_classify_in_flight')).toBe(0);
    expect(text).toContain('predify_process_resident_memory_bytes');
    await app.close();
  });
});
