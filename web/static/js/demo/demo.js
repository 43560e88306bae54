// The demo page: the current release's TF.js model predicts, in the browser,
// live, on what the user gives it; a new release is swapped in without a reload.
// The page builds itself from the release's manifest (model_io.js): the
// reference digits model gets its drawing pad, any other model a widget per
// input (inputs.js) and its outputs by kind (class probabilities with the
// labels, a regression value, plain values).
//
// The page is built on the web SDK (/sdk/fedge.js): a FedgeClient enrols
// this browser, loads the release (verified, cached in IndexedDB),
// predicts, and swaps in a new release; federated_ui.js uses the same
// client for examples, rounds and the canary evaluation.
//
//   pad (canvas.js) --8x8 grid--> client.predict (on the chosen backend)
//   inputs.js widgets --{name: values}--> client.predict --> outputs.js
//   client.on("release"): event stream -> GET /v1/releases/current -> verified swap
//
// State for people is on the page; state for tests is `window.fedgeDemo`.
// The federated part of the page (federated_ui.js) gets a small context
// object from `mountFederated(context)`, described at `federatedContext`.

import { FedgeClient } from "/sdk/fedge.js";
import { BACKENDS, DEFAULT_BACKEND, currentBackend, fallbackNote, useBackend } from "../shared/backends.js";
import { DrawingPad, GRID, paintGrid } from "./canvas.js";
import { buildInputs } from "./inputs.js";
import { layOutOutputs, showBars, showValues } from "./outputs.js";

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

let client = null; // the FedgeClient: enrolment, the model in use, releases
let model = null; // client.tfModel, null until the first release is loaded
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
  const outputs = await client.predict(rows);
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
  state.lastProbs = outputs[head.name];
  if (head.kind === "classes") {
    showDigitsOrClasses(state.lastProbs, false);
    return;
  }
  state.predicted = showValues(described, outputs);
}

function show(input, probs) {
  const blank = input.every((v) => v === 0);
  state.lastInput = input;
  $("pad-hint").hidden = !blank;
  showDigitsOrClasses(probs, blank);
}

function showDigitsOrClasses(probs, blank) {
  state.lastProbs = probs;
  state.predicted = showBars(probs, labels, blank);
  state.inferences += 1;
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

/** Show the release the client has just loaded (verified, warmed up) and lay the page out for it. */
function useLoaded(next) {
  model = client.tfModel;
  manifest = client.manifest;
  release = next;
  const layoutChanged = !described || JSON.stringify(described.inputs) !== JSON.stringify(client.described.inputs);
  described = client.described;
  const head = described.outputs[0];
  labels = head.kind === "classes" ? head.labels : manifest.labels || Array.from({ length: 10 }, (_, i) => String(i));
  if (layoutChanged) layOut();
  const loaded = client.loaded;
  state.release = { version: next.version, bundleId: next.bundle_id, channel: next.channel, name: next.name };
  state.loadedFrom = loaded.from;
  state.loadMs = loaded.ms;
  describeRelease(next);
  $("model-source").textContent = loaded.from === "cache" ? "from cache" : "downloaded";
  $("model-source").classList.toggle("cached", loaded.from === "cache");
  $("load-info").textContent = `${loaded.ms.toFixed(0)} ms, ${loaded.from === "cache" ? "from cache (IndexedDB)" : "downloaded and verified"}`;
  layOutOutputs(head, labels);
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

/** The client swapped in a new release (verified; the old model is disposed). */
async function swapped(next) {
  const previous = release;
  useLoaded(next);
  state.swaps += 1;
  const { from, ms } = client.loaded;
  notify(`Release ${next.version} is live on this page` + (previous ? ` (was release ${previous.version}); ` : "; ") +
    `${from === "cache" ? "read from cache" : "downloaded and verified"} in ${ms.toFixed(0)} ms, no reload.`);
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
    client,
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
    const pending = switching || running || client?.watcher?.checking;
    if (!pending) {
      if (!dirty || !model) return;
      schedule();
      continue;
    }
    await pending;
  }
}

async function main() {
  pad = new DrawingPad($("pad"), schedule);
  $("clear").addEventListener("click", () => pad.clear());
  $("notice-close").addEventListener("click", () => ($("notice").hidden = true));
  $("backend").addEventListener("change", (e) => selectBackend(e.target.value));
  paintGrid($("preview"), new Array(GRID * GRID).fill(0));
  labels = Array.from({ length: 10 }, (_, i) => String(i));
  layOutOutputs({ kind: "classes" }, labels);

  await selectBackend(DEFAULT_BACKEND);
  status("Enrolling this browser and loading the current release…");
  client = await FedgeClient.connect("", { enrol: true, tf });
  useLoaded(client.release);
  // Listening starts with one check, so a release published since connect() is not missed.
  client.on("release", ({ release: next }) => swapped(next));
  client.on("same", async (same) => {
    const channelChanged = release?.channel !== same.channel;
    release = same;
    state.release = { ...state.release, channel: same.channel };
    describeRelease(same);
    if (channelChanged) await announce(same); // a candidate promoted: no longer a canary
  });
  client.on("error", (error) => fail("could not load the new release", error));
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
  checkRelease: () => client?.watcher?.check(),
});

main().catch((error) => fail("the demo could not start", error));
