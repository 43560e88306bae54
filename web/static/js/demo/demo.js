// The demo page: the current release's TF.js model predicts, in the browser,
// live, on what the user gives it; a new release is swapped in without a reload.
// The page builds itself from the release's manifest (model_io.js): the
// reference digits model gets its drawing pad, any other model a widget per
// input (inputs.js) and its outputs by kind (class probabilities with the
// labels, a regression value, plain values).
//
//   pad (canvas.js) --8x8 grid--> predict (the model, on the chosen backend)
//   inputs.js widgets --{name: values}--> predict
//   releases.js: event stream -> GET /v1/releases/current -> swapIn()
//   model_store.js: the bundle's TF.js files, verified, cached in IndexedDB
//
// State for people is on the page; state for tests is `window.fedgeDemo`.
// The federated part of the page (federated_ui.js) gets a small context
// object from `mountFederated(context)`, described at `federatedContext`.

import { Device } from "../shared/api.js";
import { BACKENDS, DEFAULT_BACKEND, currentBackend, fallbackNote, useBackend } from "../shared/backends.js";
import { DrawingPad, GRID, paintGrid } from "./canvas.js";
import { buildInputs } from "./inputs.js";
import { checkInputs, describeModel, runModel } from "../shared/model_io.js";
import { ModelStore, buildModel, bundleFiles } from "../shared/model_store.js";
import { ReleaseWatcher, currentRelease } from "../shared/releases.js";

const tf = globalThis.tf;
const RECENT = 50; // latencies kept for the median

const $ = (id) => document.getElementById(id);

const state = {
  ready: false,
  release: null, // {version, bundleId, channel, name}
  backend: null,
  backendNote: "",
  lastInput: null, // number[64], the input lastProbs were computed on (digits)
  lastProbs: null, // the first output's values (class probabilities)
  lastInputs: null, // {name: number[]}: what the last prediction was made on
  lastOutputs: null, // {name: number[]}: what it gave
  kind: null, // "digits" (the drawing pad) or "widgets" (built from the manifest)
  waiting: null, // what the widgets still need before a prediction
  predicted: null,
  latency: { lastMs: null, medianMs: null, runs: 0, recentMs: [] },
  loadedFrom: null, // 'network' | 'cache', for the model in use
  loadMs: null,
  swaps: 0,
  inferences: 0,
  error: null,
};

let device = null;
let store = null;
let model = null;
let manifest = null;
let release = null; // the release object as the server sent it
let pad = null;
let labels = [];
let described = null; // describeModel(manifest)
let widgets = null; // inputs.js, for a model that is not the digits
const releaseCallbacks = [];

// --- inference ---------------------------------------------------------------

let running = null; // the inference loop's promise while it runs
let switching = null; // a backend switch's promise while it runs
let dirty = false;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One prediction: `input` is one row, the only input's values or {name: values}. */
async function predictOnce(input) {
  const started = performance.now();
  const rows = Array.isArray(input) || ArrayBuffer.isView(input)
    ? { [described.inputs[0].name]: [Array.from(input)] }
    : Object.fromEntries(Object.entries(input).map(([name, values]) => [name, [Array.from(values)]]));
  const outputs = await runModel(tf, model, described, checkInputs(described, rows));
  const first = Object.fromEntries(Object.entries(outputs).map(([name, got]) => [name, got[0]]));
  return { probs: first[described.outputs[0].name], outputs: first, ms: performance.now() - started };
}

/** Zeros for every input: the first run on a model or backend builds its kernels. */
function zeros(forModel) {
  return Object.fromEntries(forModel.inputs.map((input) => [input.name, new Array(input.size).fill(0)]));
}

const isDigits = (d) =>
  d.inputs.length === 1 && d.inputs[0].shape.join() === `${GRID},${GRID},1` && d.outputs.length === 1 && d.outputs[0].width === 10;

function recordLatency(ms) {
  const latency = state.latency;
  latency.recentMs.push(ms);
  if (latency.recentMs.length > RECENT) latency.recentMs.shift();
  latency.lastMs = ms;
  latency.medianMs = median(latency.recentMs);
  latency.runs += 1;
  $("latency-last").textContent = `${ms.toFixed(2)} ms`;
  $("latency-median").textContent = `${latency.medianMs.toFixed(2)} ms`;
  $("latency-runs").textContent = `(${latency.recentMs.length} runs on ${state.backend})`;
}

/** Run the model on the pad's drawing until the drawing stops changing. */
function schedule() {
  dirty = true;
  if (!running && !switching && model) {
    running = (async () => {
      try {
        while (dirty && model) {
          dirty = false;
          if (state.kind === "widgets") {
            await predictWidgets();
            continue;
          }
          const input = pad.toGrid();
          paintGrid($("preview"), input);
          const { probs, outputs, ms } = await predictOnce(input);
          recordLatency(ms);
          state.lastInputs = { [described.inputs[0].name]: [...input] };
          state.lastOutputs = outputs;
          show(input, probs);
        }
      } catch (error) {
        fail("inference failed", error);
      } finally {
        running = null;
      }
    })();
  }
  return running;
}

async function predictWidgets() {
  const read = widgets.read();
  state.waiting = read.missing || null;
  if (read.missing) {
    $("confidence").textContent = read.missing;
    return;
  }
  const { outputs, ms } = await predictOnce(read.values);
  recordLatency(ms);
  state.lastInputs = Object.fromEntries(Object.entries(read.values).map(([name, v]) => [name, Array.from(v)]));
  state.lastOutputs = outputs;
  state.inferences += 1;
  const head = described.outputs[0];
  const row = outputs[head.name];
  state.lastProbs = row;
  if (head.kind === "classes") {
    showBars(row, false);
    return;
  }
  state.predicted = head.kind === "regression" ? row[0] : null;
  $("predicted").textContent = head.kind === "regression" ? String(Number(row[0].toPrecision(4))) : "–";
  $("predicted").classList.remove("faint");
  $("confidence").textContent = head.kind === "regression" ? `${head.name}, predicted value` : `${head.name}: ${row.map((v) => v.toFixed(4)).join(", ")}`;
  const extra = described.outputs.slice(1).map((o) => `${o.name}: ${outputs[o.name].map((v) => v.toFixed(4)).join(", ")}`);
  if (extra.length) $("confidence").textContent += ` · ${extra.join(" · ")}`;
}

function show(input, probs) {
  const blank = input.every((v) => v === 0);
  state.lastInput = input;
  $("pad-hint").hidden = !blank;
  showBars(probs, blank);
}

function showBars(probs, blank) {
  let best = 0;
  for (let i = 1; i < probs.length; i++) if (probs[i] > probs[best]) best = i;
  state.lastProbs = probs;
  state.predicted = best;
  state.inferences += 1;
  $("predicted").textContent = blank ? "–" : labels[best] ?? String(best);
  $("predicted").classList.toggle("faint", blank);
  $("confidence").textContent = blank ? "draw to predict" : `${(probs[best] * 100).toFixed(1)}% sure`;
  const rows = $("probs").children;
  probs.forEach((p, i) => {
    const row = rows[i];
    row.classList.toggle("top", !blank && i === best);
    row.querySelector(".bar-fill").style.width = `${(p * 100).toFixed(1)}%`;
    row.querySelector(".value").textContent = `${(p * 100).toFixed(1)}%`;
  });
}

function buildBars() {
  const list = $("probs");
  list.replaceChildren();
  labels.forEach((label, i) => {
    const row = document.createElement("li");
    row.id = `prob-${i}`;
    row.innerHTML = '<span class="label"></span><span class="bar"><span class="bar-fill"></span></span><span class="value">0%</span>';
    row.querySelector(".label").textContent = label;
    list.append(row);
  });
}

// --- backend -----------------------------------------------------------------

async function selectBackend(name) {
  while (switching || running) await (switching || running);
  switching = switchBackend(name);
  try {
    return await switching;
  } finally {
    switching = null;
    if (dirty) schedule();
  }
}

async function switchBackend(name) {
  const select = $("backend");
  select.disabled = true;
  try {
    const result = await useBackend(name);
    state.backend = result.backend;
    state.backendNote = fallbackNote(result);
    for (const failure of result.failures) console.warn(`fedge: ${failure.backend} backend: ${failure.error}`);
    select.value = result.backend;
    $("backend-running").textContent = `running on ${result.backend}`;
    const note = $("backend-note");
    note.textContent = state.backendNote;
    note.hidden = !state.backendNote;
    state.latency = { lastMs: null, medianMs: null, runs: 0, recentMs: [] };
    if (model && !widgets?.unsupported.length) {
      await predictOnce(zeros(described)); // the first run on a backend compiles its kernels
      dirty = true;
    }
    return result.backend;
  } finally {
    select.disabled = false;
  }
}

// --- releases ----------------------------------------------------------------

function describeRelease(r) {
  $("release-version").textContent = `Release ${r.version}`;
  $("release-meta").textContent = `${r.name} · ${r.channel} · bundle ${r.bundle_id.slice(0, 12)}`;
  $("release-meta").title = r.bundle_id;
  $("release-badge").textContent = `release ${r.version}${r.channel === "canary" ? " (canary)" : ""}`;
  $("release-badge").hidden = false;
}

/** Download (or read from the cache), verify and build a release's model; not yet in use. */
async function loadRelease(next) {
  const started = performance.now();
  const bundle = await bundleFiles(store, device, next);
  const built = await buildModel(bundle.manifest, bundle.files);
  const shape = describeModel(bundle.manifest);
  // One warm-up run: the first predict on a model builds its kernels.
  if (shape.inputs.every((input) => input.size != null)) await runModel(tf, built, shape, checkInputs(shape, Object.fromEntries(Object.entries(zeros(shape)).map(([k, v]) => [k, [v]]))));
  return { model: built, manifest: bundle.manifest, described: shape, from: bundle.from, ms: performance.now() - started };
}

function useLoaded(next, loaded) {
  const old = model;
  model = loaded.model;
  manifest = loaded.manifest;
  release = next;
  const layoutChanged = !described || JSON.stringify(described.inputs) !== JSON.stringify(loaded.described.inputs);
  described = loaded.described;
  const head = described.outputs[0];
  labels = head.kind === "classes" ? head.labels : manifest.labels || Array.from({ length: 10 }, (_, i) => String(i));
  if (old) old.dispose();
  if (layoutChanged) layOut();
  state.release = { version: next.version, bundleId: next.bundle_id, channel: next.channel, name: next.name };
  state.loadedFrom = loaded.from;
  state.loadMs = loaded.ms;
  describeRelease(next);
  $("model-source").textContent = loaded.from === "cache" ? "from cache" : "downloaded";
  $("model-source").classList.toggle("cached", loaded.from === "cache");
  $("load-info").textContent = `${loaded.ms.toFixed(0)} ms, ${loaded.from === "cache" ? "from cache (IndexedDB)" : "downloaded and verified"}`;
  const named = labels.some((label) => label.length > 1) || head.kind === "regression";
  $("probs").classList.toggle("named", named);
  $("predicted").classList.toggle("named", named);
  if (head.kind !== "classes") $("probs").replaceChildren();
  else if ($("probs").children.length !== labels.length) buildBars();
}

/** The digits pad for the reference model, else widgets from the manifest. */
function layOut() {
  state.kind = isDigits(described) ? "digits" : "widgets";
  const digits = state.kind === "digits";
  $("draw-card").hidden = !digits;
  $("input-card").hidden = digits;
  document.title = digits ? "fedge · draw a digit" : `fedge · ${described.name}`;
  if (digits) {
    widgets = null;
    return;
  }
  widgets = buildInputs($("inputs"), described, schedule);
  $("input-title").textContent = `${described.name}: inputs`;
  if (widgets.unsupported.length) {
    status(`The page cannot offer an input for ${widgets.unsupported.map((u) => `${u.name} (${u.why})`).join("; ")}. The SDK's predict() still takes it.`, "warn");
  }
  $("predicted").textContent = "–";
  $("confidence").textContent = "fill in the inputs to predict";
}

async function swapIn(next) {
  const loaded = await loadRelease(next);
  const previous = release;
  useLoaded(next, loaded);
  state.swaps += 1;
  notify(`Release ${next.version} is live on this page` + (previous ? ` (was release ${previous.version}); ` : "; ") +
    `${loaded.from === "cache" ? "read from cache" : "downloaded and verified"} in ${loaded.ms.toFixed(0)} ms, no reload.`);
  await schedule();
  await announce(next);
}

// Tell the page's other parts (the federated device) what it runs now.
async function announce(next) {
  for (const callback of releaseCallbacks) {
    try {
      await callback({ release: next, manifest, model });
    } catch (error) {
      console.error("fedge: a release callback failed", error);
    }
  }
}

// --- page --------------------------------------------------------------------

function notify(text) {
  $("notice-text").textContent = text;
  $("notice").hidden = false;
}

function status(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.className = `status ${kind}`;
  el.hidden = !text;
}

function fail(what, error) {
  state.error = `${what}: ${error.message || error}`;
  status(state.error, "error");
  console.error(`fedge: ${what}`, error);
}

/** What federated_ui.js gets; it must not hold on to the model (a swap disposes it). */
function federatedContext() {
  return {
    device,
    getModel: () => model,
    getManifest: () => manifest,
    getRelease: () => release,
    getInput: () => {
      if (state.kind === "digits") return state.lastInput ? [...state.lastInput] : pad.toGrid();
      const read = widgets.read();
      return read.values || null;
    },
    getDescribed: () => described,
    onRelease: (callback) => releaseCallbacks.push(callback),
    setBackend: (name) => selectBackend(name),
    getBackend: () => currentBackend(),
  };
}

async function mountFederatedPart() {
  try {
    const { mountFederated } = await import("./federated_ui.js");
    await mountFederated(federatedContext());
  } catch (error) {
    console.error("fedge: the federated part of the page did not start", error);
  }
}

/** Resolves once no inference, backend switch or release check is under way. */
async function idle() {
  for (;;) {
    const pending = switching || running || watcher?.checking;
    if (!pending) {
      if (!dirty || !model) return;
      schedule();
      continue;
    }
    await pending;
  }
}

let watcher = null;

async function main() {
  pad = new DrawingPad($("pad"), schedule);
  $("clear").addEventListener("click", () => pad.clear());
  $("notice-close").addEventListener("click", () => ($("notice").hidden = true));
  $("backend").addEventListener("change", (e) => selectBackend(e.target.value));
  paintGrid($("preview"), new Array(GRID * GRID).fill(0));
  labels = Array.from({ length: 10 }, (_, i) => String(i));
  buildBars();

  await selectBackend(DEFAULT_BACKEND);
  status("Enrolling this browser…");
  device = new Device();
  await device.enrol();
  store = await ModelStore.open().catch((error) => {
    console.warn("fedge: no IndexedDB, the model will not be cached", error);
    return null;
  });
  status("Loading the current release…");
  // Listen first, then ask: a release pushed in between is not missed.
  watcher = new ReleaseWatcher(device, {
    running: () => release?.bundle_id,
    onRelease: swapIn,
    onSame: async (same) => {
      const channelChanged = release?.channel !== same.channel;
      release = same;
      state.release = { ...state.release, channel: same.channel };
      describeRelease(same);
      if (channelChanged) await announce(same); // a candidate promoted: no longer a canary
    },
    onError: (error) => fail("could not load the new release", error),
  }).start();
  const first = await currentRelease(device);
  useLoaded(first, await loadRelease(first));
  if (!widgets?.unsupported.length) status("");
  state.ready = true;
  await schedule();
  await mountFederatedPart();
}

window.fedgeDemo = Object.assign(state, {
  backends: BACKENDS,
  idle,
  predict: async (input) => (await predictOnce(input)).probs,
  described: () => described,
  setBackend: (name) => selectBackend(name),
  checkRelease: () => watcher?.check(),
});

main().catch((error) => fail("the demo could not start", error));
