/** Where an engine step spends its time: each graph of a model at a batch size. Diagnostic. */
import { parseArgs } from 'node:util';
import { elementCount } from '../src/tensor.js';
import { DEFAULT_MODEL, openModel, table } from './lib.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL },
    batch: { type: 'string', default: '1' },
    threads: { type: 'string', default: '2' },
    opt: { type: 'string', default: 'all' },
  },
});
const batch = Number(values.batch);
const model = await openModel(values.model, {
  intraOpThreads: Number(values.threads),
  graphOptimization: values.opt as 'all',
});
const graphs = [...model.encoders, ...model.feedback, model.head!];
const rows = [];
for (const g of graphs) {
  const feeds = Object.fromEntries(
    g.inputs.map((i) => {
      const dims = i.shape.map((d) => (typeof d === 'string' ? batch : d));
      return [i.name, { data: new Float32Array(elementCount(dims)).fill(0.1), dims }];
    }),
  );
  for (let k = 0; k < 3; k++) await g.run(feeds);
  const n = 20;
  const t0 = performance.now();
  for (let k = 0; k < n; k++) await g.run(feeds);
  rows.push([g.file.split('/').pop()!, (performance.now() - t0) / n]);
}
console.log(table(['graph', `ms per run (batch ${batch})`], rows));
await model.release();
