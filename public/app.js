// The page at GET /: one image in, the per-timestep classification streamed out of
// POST /classify as server-sent events and drawn as it arrives. Plain browser JavaScript, no
// build step, nothing fetched from outside this server.

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
// One colour per class index and per PCoder, so a line keeps its colour as the chart grows.
const PALETTE = [
  '#2563eb',
  '#dc2626',
  '#059669',
  '#d97706',
  '#7c3aed',
  '#db2777',
  '#0891b2',
  '#65a30d',
  '#475569',
  '#ea580c',
];
const SHOWN_CLASSES = 3;

const state = { model: undefined, file: undefined, controller: undefined };

/** A seeded uniform generator (mulberry32): the same image gets the same noise every time. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The chosen image with Gaussian noise of `sigma` (pixel values in [0, 1]) added to every
 * colour channel, as a PNG: what predictive coding is meant to help with. sigma 0: the file.
 */
async function withNoise(file, sigma) {
  if (!(sigma > 0)) return file;
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext('2d');
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
  const next = random(1);
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  for (let k = 0; k < pixels.data.length; k += 4) {
    const grey = pixels.data[k] === pixels.data[k + 1] && pixels.data[k] === pixels.data[k + 2];
    const shared = normal();
    for (let c = 0; c < 3; c++) {
      const v = pixels.data[k + c] + 255 * sigma * (grey ? shared : normal());
      pixels.data[k + c] = Math.max(0, Math.min(255, Math.round(v)));
    }
  }
  context.putImageData(pixels, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
}

function status(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function headers(extra = {}) {
  const key = $('api-key').value.trim();
  return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
}

async function errorMessage(res) {
  try {
    const body = await res.json();
    return body.message ?? body.error ?? res.statusText;
  } catch {
    return res.statusText;
  }
}

async function loadModel() {
  const res = await fetch('/models', { headers: headers() });
  if (!res.ok) {
    status(`GET /models: ${res.status} ${await errorMessage(res)}`, true);
    return;
  }
  const { models } = await res.json();
  const chooser = $('model-choice');
  chooser.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
  chooser.value = (models.find((m) => m.default) ?? models[0]).name;
  // A server with one model has nothing to choose.
  chooser.parentElement.hidden = models.length < 2;
  chooser.onchange = () => showModel(models.find((m) => m.name === chooser.value));
  showModel(models.find((m) => m.name === chooser.value));
  status('Choose an image.');
}

/** Shows a model's description and its profiles, and sets the timesteps to its defaults. */
function showModel(model) {
  state.model = model;
  $('model').textContent = `${model.name}: ${model.description}`;
  const select = $('profile');
  select.replaceChildren(
    ...model.profiles.map((p) => {
      const d = p.defaultTimesteps;
      const steps = d === 'auto' ? 'until settled' : `${d} ${d === 1 ? 'timestep' : 'timesteps'}`;
      const option = new Option(`${p.name} (${steps})`, p.name);
      option.title = p.description ?? '';
      return option;
    }),
  );
  select.value = model.defaultProfile;
  $('timesteps').max = String(model.timesteps.max);
  const useDefaults = (p) => {
    // A profile whose requests run auto by default: the box ticked, its cap as the timesteps.
    const auto = p.defaultTimesteps === 'auto';
    $('auto').checked = auto;
    const steps = auto ? (p.anytime?.maxTimesteps ?? model.timesteps.max) : p.defaultTimesteps;
    $('timesteps').value = String(Math.min(steps, model.timesteps.max));
  };
  useDefaults(model.profiles.find((x) => x.name === select.value));
  select.onchange = () => {
    const p = model.profiles.find((x) => x.name === select.value);
    if (p) useDefaults(p);
  };
}

/**
 * The corruption score in words, against the clean validation images' quantiles the server
 * gives in /models (docs/anytime.md): how unlike clean data the image looks to the network.
 */
function describeScore(score, calibration) {
  if (typeof score !== 'number') return '';
  const q = calibration?.cleanQuantiles;
  const reading = !q
    ? ''
    : score > q.p99
      ? ': unlike clean images (above 99% of clean validation images)'
      : score > q.p95
        ? ': unusual (above 95% of clean validation images)'
        : ': like clean images';
  return `Corruption score ${score.toFixed(2)}${reading}`;
}

/** Reads server-sent events from a fetch response, calling onEvent(name, data) for each. */
async function readEvents(res, onEvent) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(event, JSON.parse(data.join('\n')));
    }
  }
}

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Draws lines over timesteps 0..T into `svg`: series is [{ name, colour, values: [y at t] }],
 * y in [0, yMax]. The x axis spans all requested timesteps, so the lines grow to the right.
 */
function drawChart(svg, { timesteps, series, yMax, yTicks, format }) {
  const box = svg.viewBox.baseVal;
  const m = { left: 44, right: 12, top: 10, bottom: 28 };
  const w = box.width - m.left - m.right;
  const h = box.height - m.top - m.bottom;
  const x = (t) => m.left + (timesteps === 0 ? w / 2 : (t / timesteps) * w);
  const y = (v) => m.top + h - (Math.min(v, yMax) / yMax) * h;
  const nodes = [];
  for (const tick of yTicks) {
    nodes.push(el('line', { class: 'grid', x1: m.left, x2: m.left + w, y1: y(tick), y2: y(tick) }));
    nodes.push(el('text', { x: m.left - 6, y: y(tick) + 4, 'text-anchor': 'end' }, format(tick)));
  }
  const every = Math.max(1, Math.ceil(timesteps / 16));
  for (let t = 0; t <= timesteps; t += every)
    nodes.push(el('text', { x: x(t), y: m.top + h + 16, 'text-anchor': 'middle' }, String(t)));
  nodes.push(el('text', { x: m.left + w, y: box.height - 1, 'text-anchor': 'end' }, 'timestep'));
  nodes.push(el('line', { class: 'axis', x1: m.left, x2: m.left + w, y1: m.top + h, y2: m.top + h }));
  nodes.push(el('line', { class: 'axis', x1: m.left, x2: m.left, y1: m.top, y2: m.top + h }));
  for (const s of series) {
    const points = s.values.map((v, t) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    nodes.push(
      el('polyline', { class: 'line', stroke: s.colour, points: points.join(' '), 'data-name': s.name }),
    );
    s.values.forEach((v, t) => nodes.push(el('circle', { cx: x(t), cy: y(v), r: 3, fill: s.colour })));
  }
  svg.replaceChildren(...nodes);
  svg.dataset.steps = String(series[0]?.values.length ?? 0);
}

/** 0, then round steps up to `max` */
function ticks(max) {
  const step = max <= 1.5 ? 0.25 : max <= 3 ? 0.5 : 1;
  return Array.from({ length: Math.floor(max / step + 1e-9) + 1 }, (_, k) => k * step);
}

function drawLegend(list, series, value) {
  list.replaceChildren(
    ...series.map((s) => {
      const item = document.createElement('li');
      item.style.setProperty('--colour', s.colour);
      item.textContent = `${s.name}: ${value(s)}`;
      return item;
    }),
  );
}

function render(steps, timesteps) {
  const labels = state.model.labels;
  // The classes that were ever most likely, then the most probable at the latest step.
  const latest = steps[steps.length - 1];
  const prob = (step, index) => step.topk.find((c) => c.index === index)?.probability ?? 0;
  const ranked = [...new Set([...steps.map((s) => s.index), ...latest.topk.map((c) => c.index)])]
    .sort((a, b) => prob(latest, b) - prob(latest, a))
    .slice(0, SHOWN_CLASSES);
  const classes = ranked.map((index) => ({
    name: labels[index],
    colour: PALETTE[index % PALETTE.length],
    values: steps.map((s) => prob(s, index)),
  }));
  drawChart($('chart'), {
    timesteps,
    series: classes,
    yMax: 1,
    yTicks: [0, 0.25, 0.5, 0.75, 1],
    format: (v) => `${Math.round(v * 100)}%`,
  });
  drawLegend($('legend'), classes, (s) => `${(s.values[s.values.length - 1] * 100).toFixed(1)}%`);

  const pcoders = Object.keys(steps[0].errors);
  const errors = pcoders.map((name, i) => ({
    name,
    colour: PALETTE[(i + 4) % PALETTE.length],
    values: steps.map((s) => s.errors[name] / (steps[0].errors[name] || 1)),
    last: latest.errors[name],
  }));
  const top = Math.max(1.25, ...errors.flatMap((s) => s.values));
  const yMax = Math.ceil(top * 4) / 4;
  drawChart($('errors'), {
    timesteps,
    series: errors,
    yMax,
    yTicks: ticks(yMax),
    format: (v) => `${v.toFixed(2)}×`,
  });
  drawLegend(
    $('errors-legend'),
    errors,
    (s) => `e = ${s.last.toPrecision(3)} (${s.values[s.values.length - 1].toFixed(2)}× t = 0)`,
  );
}

async function classify() {
  if (!state.file || !state.model) return;
  state.controller?.abort();
  const controller = (state.controller = new AbortController());
  // An image the browser cannot decode goes as it is: the server says what is wrong with it.
  const upload = await withNoise(state.file, Number($('noise').value)).catch(() => state.file);
  showPreview(upload);
  const timesteps = Number($('timesteps').value);
  const auto = $('auto').checked;
  const params = new URLSearchParams({
    ...(auto ? { timesteps: 'auto', max_timesteps: String(timesteps) } : { timesteps: String(timesteps) }),
    model: state.model.name,
    profile: $('profile').value,
    topk: String(state.model.labels.length),
  });
  $('result').textContent = '';
  $('score').textContent = '';
  status('classifying…');
  const steps = [];
  try {
    const res = await fetch(`/classify?${params}`, {
      method: 'POST',
      headers: headers({
        accept: 'text/event-stream',
        'content-type': upload.type || 'application/octet-stream',
      }),
      body: upload,
      signal: controller.signal,
    });
    if (!res.ok) {
      status(`${res.status}: ${await errorMessage(res)}`, true);
      return;
    }
    await readEvents(res, (event, data) => {
      if (event === 'step') {
        steps.push(data);
        render(steps, timesteps);
        status(`timestep ${data.t} of ${timesteps}`);
      } else if (event === 'result') {
        const first = steps[0];
        const p = data.prediction;
        $('result').textContent =
          `${p.label}: ${(p.confidence * 100).toFixed(1)}% after ${data.timesteps} timesteps` +
          (data.stop
            ? data.stop.reason === 'settled'
              ? ', settled'
              : data.stop.reason === 'gated'
                ? `, not iterated: its errors look clean (the profile iterates only above z = ${data.stop.gate})`
                : `, not settled by ${timesteps}`
            : '') +
          (first ? ` (t = 0: ${first.label}, ${(first.confidence * 100).toFixed(1)}%)` : '');
        $('score').textContent = describeScore(data.corruptionScore, state.model.corruptionScore);
        const sigma = Number($('noise').value);
        const noise = sigma > 0 ? `, Gaussian noise σ ${sigma} added` : '';
        status(
          `${data.model}, profile ${data.profile}${noise}; ${data.timings.inferenceMs.toFixed(0)} ms of inference`,
        );
      } else if (event === 'error') {
        status(`${data.statusCode}: ${data.message}`, true);
      }
    });
  } catch (err) {
    if (!controller.signal.aborted) status(String(err), true);
  }
}

function showPreview(blob) {
  const preview = $('preview');
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(blob);
  preview.hidden = false;
}

function choose(file) {
  if (!file) return;
  state.file = file;
  $('drop-hint').textContent = file.name;
  $('run').disabled = false;
  void classify();
}

function wire() {
  const drop = $('drop');
  $('file').addEventListener('change', (e) => choose(e.target.files[0]));
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    choose(e.dataTransfer.files[0]);
  });
  $('run').addEventListener('click', () => void classify());
  $('noise').addEventListener('change', () => void classify());
  $('auto').addEventListener('change', () => void classify());
  $('api-key').addEventListener('change', () => void loadModel());
}

wire();
void loadModel();
