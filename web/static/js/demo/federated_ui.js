// The demo page's federated part: corrections, "Help improve the model",
// and the canary evaluation of a new release, in <section id="federated">.
//
//   "That's a 7"          -> examples.js (IndexedDB; never sent)
//   Help improve the model -> federated.js: task, checkpoint, local SGD, delta, receipt
//   channel "canary"      -> canary.js: candidate vs live on the examples, numbers only
//
// demo.js calls mountFederated(context) once its model is ready; the
// context gives the page's FedgeClient (web/sdk/fedge.js: its examples,
// joinRound and evaluateCanary do the work here), the current
// model/manifest/release (read them
// when needed: a release swap disposes the old model), the drawing, the
// release callbacks and the backend switch. State for tests is
// `window.fedgeFederated`.

import { objectiveOf, trainLocally } from "../shared/federated.js";
import { describeModel } from "../shared/model_io.js";
import { healthReports } from "./health_ui.js";
import { readWeights } from "../shared/weights.js";

const tf = globalThis.tf;

const REASONS = {
  conditions: "this device does not meet the round's conditions",
  round_full: "the round has all the devices it needs",
  fairness_wait: "this device took part recently; others go first",
  already_contributed: "this device already sent its update for this round",
  no_open_round: "no round is open right now",
  concurrency_full: "enough devices are training right now",
};

const TEMPLATE = `
  <div class="card-head">
    <h2 id="fed-title">Teach the model</h2>
    <span id="fed-count" class="pill">0 examples</span>
  </div>
  <p class="muted small">Wrong guess? Say what the right answer is. The example is kept in this browser only
    (IndexedDB); taking part in a round sends weight changes and a few scores, never your examples.</p>
  <div id="fed-labels" class="fed-labels" role="group" aria-label="The right answer for your drawing"></div>
  <p id="fed-label-note" class="muted small fed-note" aria-live="polite"></p>
  <div class="fed-actions">
    <button type="button" id="fed-contribute" class="button primary">Help improve the model</button>
    <button type="button" id="fed-clear" class="button">Clear examples</button>
  </div>
  <progress id="fed-progress" class="fed-progress" max="1" value="0" hidden></progress>
  <ol id="fed-log" class="fed-log" aria-live="polite"></ol>
  <div id="fed-receipt" class="fed-panel" hidden>
    <h3>Receipt</h3>
    <dl id="fed-receipt-facts" class="facts"></dl>
  </div>
  <div id="fed-canary" class="fed-panel" hidden>
    <h3>Canary release</h3>
    <p id="fed-canary-text" class="small"></p>
    <button type="button" id="fed-evaluate" class="button">Evaluate on my examples</button>
    <dl id="fed-canary-facts" class="facts" hidden></dl>
  </div>
`;

function element(id) {
  return document.getElementById(id);
}

function facts(list, rows) {
  list.replaceChildren();
  for (const [term, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
}

function linkStyles() {
  if (document.querySelector('link[href="/static/css/federated.css"]')) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/static/css/federated.css";
  document.head.append(link);
}

const percent = (x) => `${(x * 100).toFixed(1)}%`;
const score = (metric, x) => (metric === "accuracy" ? percent(x) : x.toFixed(4));

export async function mountFederated({ client, getModel, getManifest, getRelease, getInput, onRelease, setBackend, getBackend }) {
  const section = element("federated");
  if (!section) throw new Error("the page has no <section id=federated>");
  linkStyles();
  section.classList.add("card", "fed");
  section.setAttribute("aria-labelledby", "fed-title");
  section.innerHTML = TEMPLATE;

  const examples = client.examples; // IndexedDB: the same store the SDK trains on
  const control = {
    getBackend: getBackend || (() => tf.getBackend()),
    setBackend: setBackend || ((name) => tf.setBackend(name)),
  };
  const state = {
    ready: false,
    busy: false,
    examples: 0,
    error: null,
    trainable: true,
    why: null, // why this bundle cannot be trained here, when it cannot
    log: [],
    lastOutcome: null,
    lastReceipt: null,
    lastUpdate: null,
    lastEvaluation: null,
    lastHealth: null, // the last health report's outcome (health.js)
    healthReports: 0,
    trainingRuns: [],
    settings: { shuffle: true, trainBackend: "cpu" },
  };
  let queue = Promise.resolve();

  const log = (text, kind = "") => {
    state.log.push(text);
    const item = document.createElement("li");
    item.textContent = text;
    if (kind) item.className = kind;
    element("fed-log").append(item);
  };

  const progress = (step, text, fraction) => {
    const bar = element("fed-progress");
    bar.hidden = false;
    bar.value = fraction;
    log(text, step === "done" ? "ok" : "");
  };

  const refreshCount = async () => {
    state.examples = await examples.count();
    const n = state.examples;
    element("fed-count").textContent = `${n} example${n === 1 ? "" : "s"}`;
    element("fed-clear").disabled = state.busy || n === 0;
    element("fed-contribute").disabled = state.busy || n === 0 || !state.trainable;
    element("fed-evaluate").disabled = state.busy || n === 0;
  };

  const setBusy = (busy) => {
    state.busy = busy;
    for (const id of ["fed-contribute", "fed-clear", "fed-evaluate"]) element(id).disabled = busy;
    if (!state.trainable) element("fed-contribute").disabled = true;
    if (!busy) refreshCount();
  };

  /** Run one job at a time; its error is shown, never thrown at the page. */
  const run = (job) => {
    const next = queue.then(async () => {
      setBusy(true);
      state.error = null;
      try {
        return await job();
      } catch (error) {
        state.error = `${error.code ? `${error.code}: ` : ""}${error.message || error}`;
        log(state.error, "error");
        console.warn("fedge federated:", error);
        return null;
      } finally {
        setBusy(false);
      }
    });
    queue = next.catch(() => {});
    return next;
  };

  // --- corrections ---------------------------------------------------------

  /** Store one example: its inputs ({name: values}, or the only input's values) and label, both checked. */
  const addExample = async (inputs, label) => {
    const described = describeModel(getManifest());
    const byName = Array.isArray(inputs) || ArrayBuffer.isView(inputs) ? { [described.inputs[0].name]: inputs } : inputs;
    const rows = Object.fromEntries(Object.entries(byName ?? {}).map(([name, v]) => [name, Array.from(v)]));
    await client.addExample(rows, label); // checked (inputs and label) before it is kept
    await refreshCount();
    scheduleHealth();
    return state.examples;
  };

  // --- the live model's health (health_ui.js) -------------------------------
  const { reportHealth, scheduleHealth } = healthReports({ client, run, log, state });

  const saveCurrent = async (label, shown) => {
    const inputs = getInput();
    const blank = !inputs || ((Array.isArray(inputs) || ArrayBuffer.isView(inputs)) && !inputs.some((v) => v > 0));
    if (blank) {
      element("fed-label-note").textContent = Array.isArray(inputs) ? "Draw a digit first." : "Fill in the inputs first.";
      return;
    }
    try {
      const count = await addExample(inputs, label);
      element("fed-label-note").textContent = `Saved as “${shown}” in this browser (${count} stored).`;
    } catch (error) {
      element("fed-label-note").textContent = `Not saved: ${error.message}`;
    }
  };

  /** Class buttons for a classifier, a target field for a regressor, or why this bundle only predicts. */
  const labelButtons = () => {
    const manifest = getManifest();
    const group = element("fed-labels");
    group.replaceChildren();
    let objective;
    try {
      objective = objectiveOf(manifest);
      state.trainable = true;
      state.why = null;
    } catch (error) {
      state.trainable = false;
      state.why = error.message;
      element("fed-label-note").textContent = `This model only predicts here: ${error.message}.`;
      element("fed-contribute").disabled = true;
      return;
    }
    if (!objective.classifier || objective.loss === "binary_crossentropy") {
      const label = document.createElement("label");
      label.className = "feature-field";
      const field = document.createElement("input");
      field.type = "number";
      field.step = "any";
      field.id = "fed-target";
      label.append(Object.assign(document.createElement("span"), { textContent: `Right value of ${manifest.outputs[0].name}` }), field);
      const save = document.createElement("button");
      save.type = "button";
      save.className = "button fed-label";
      save.textContent = "Save example";
      save.addEventListener("click", () => saveCurrent(field.value.trim() === "" ? Number.NaN : Number(field.value), field.value));
      group.append(label, save);
      return;
    }
    const head = describeModel(manifest).outputs[0];
    const labels = head.labels || manifest.labels || Array.from({ length: objective.width }, (_, i) => String(i));
    labels.forEach((label, id) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button fed-label";
      button.textContent = label;
      button.setAttribute("aria-label", `That's a ${label}`);
      button.title = `That's a ${label}`;
      button.addEventListener("click", () => saveCurrent(id, label));
      group.append(button);
    });
  };

  element("fed-clear").addEventListener("click", () =>
    run(async () => {
      await examples.clear();
      element("fed-label-note").textContent = "Your examples were deleted from this browser.";
      await refreshCount();
    }),
  );

  // --- a round -------------------------------------------------------------

  const showReceipt = (outcome) => {
    if (outcome.secure) {
      // A secure round gives no receipt: the server never sees this update alone.
      facts(element("fed-receipt-facts"), [
        ["Round", String(outcome.round_id)],
        ["Examples", String(outcome.num_examples)],
        ["Update", `${outcome.bytes} bytes, masked: secure aggregation, the server learns only the round's sum`],
        [`Local ${outcome.metric}`, `${score(outcome.metric, outcome.metrics[`${outcome.metric}_before`])} → ${score(outcome.metric, outcome.metrics[outcome.metric])}`],
        ["Training", `${outcome.epochMs.length} epoch(s) on ${outcome.backend}, ${outcome.epochMs.map((ms) => ms.toFixed(0)).join(" + ")} ms`],
      ]);
      element("fed-receipt").hidden = false;
      return;
    }
    const receipt = outcome.receipt;
    facts(element("fed-receipt-facts"), [
      ["Round", String(receipt.round_id)],
      ["Examples", String(receipt.num_examples)],
      ["Update", `${outcome.bytes} bytes, sha256 ${receipt.digest.slice(0, 16)}…`],
      ["Delta norm", `${receipt.norm.toFixed(4)}${receipt.clipped ? " (clipped)" : ""}`],
      [`Local ${outcome.metric}`, `${score(outcome.metric, outcome.metrics[`${outcome.metric}_before`])} → ${score(outcome.metric, outcome.metrics[outcome.metric])}`],
      ["Local loss", `${outcome.metrics.loss_before.toFixed(4)} → ${outcome.metrics.loss_after.toFixed(4)}`],
      ["Training", `${outcome.epochMs.length} epoch(s) on ${outcome.backend}, ${outcome.epochMs.map((ms) => ms.toFixed(0)).join(" + ")} ms`],
      ["Received", new Date(receipt.received_at * 1000).toLocaleTimeString()],
    ]);
    element("fed-receipt").hidden = false;
  };

  const contributeOnce = () =>
    run(async () => {
      element("fed-log").replaceChildren();
      element("fed-receipt").hidden = true;
      const outcome = await client.joinRound({
        control,
        backend: state.settings.trainBackend,
        shuffle: state.settings.shuffle,
        onProgress: progress,
      });
      state.lastOutcome = outcome;
      if (outcome.status === "no_task") {
        const why = REASONS[outcome.reason] || outcome.reason;
        const retry = outcome.retry_after_s != null ? ` Try again in ${Math.ceil(outcome.retry_after_s)} s.` : "";
        log(`No task: ${why} (${outcome.reason}).${retry}`, "warn");
        element("fed-progress").hidden = true;
        return outcome;
      }
      state.lastReceipt = outcome.receipt;
      state.lastUpdate = {
        round_id: outcome.round_id,
        base_checkpoint: outcome.base_checkpoint,
        num_examples: outcome.num_examples,
        metrics: outcome.metrics,
        bytes: outcome.bytes,
      };
      state.trainingRuns.push({ backend: outcome.backend, examples: outcome.num_examples, epochMs: outcome.epochMs });
      showReceipt(outcome);
      return outcome;
    });

  element("fed-contribute").addEventListener("click", () => contributeOnce());

  /** Time local training on `backend` from the page's current weights; nothing is sent. */
  const benchmarkTraining = ({ backend = "cpu", epochs = 3, batch_size = 16, learning_rate = 0.05 } = {}) =>
    run(async () => {
      const model = getModel();
      const manifest = getManifest();
      const base = readWeights(model, manifest.weights);
      const result = await trainLocally({
        tf,
        model,
        manifest,
        base,
        examples: await examples.all(),
        config: { local_epochs: epochs, batch_size, learning_rate },
        backend,
        control,
      });
      const timing = { backend: result.backend, examples: state.examples, epochMs: result.epochMs };
      state.trainingRuns.push(timing);
      return timing;
    });

  // --- canary --------------------------------------------------------------

  const showCanary = () => {
    const release = getRelease();
    const canary = release?.channel === "canary";
    element("fed-canary").hidden = !canary;
    if (canary) {
      element("fed-canary-text").textContent =
        `This page runs release ${release.version}, a candidate being tried on a few devices first. ` +
        "Scoring it against the live release on your examples helps decide whether everyone gets it; only the scores are sent.";
      element("fed-evaluate").textContent = `Evaluate release ${release.version} on my examples`;
    }
    return canary;
  };

  const evaluateCanary = () =>
    run(async () => {
      const report = await client.evaluateCanary({ onProgress: progress });
      state.lastEvaluation = report;
      const body = report.body;
      facts(element("fed-canary-facts"), [
        ["Reported", `release ${report.version} vs live release ${body.baseline_version}`],
        ["Candidate", `${body.metric} ${score(body.metric, body.candidate[body.metric])}, loss ${body.candidate.loss.toFixed(4)}`],
        ["Live", `${body.metric} ${score(body.metric, body.baseline[body.metric])}, loss ${body.baseline.loss.toFixed(4)}`],
        ["Examples", String(body.num_examples)],
        ["Latency", `${body.latency_ms.toFixed(3)} ms per example`],
        ["Decision", report.receipt.decided || "pending"],
      ]);
      element("fed-canary-facts").hidden = false;
      return report;
    });

  element("fed-evaluate").addEventListener("click", () => evaluateCanary());

  const afterRelease = async () => {
    labelButtons();
    const release = getRelease();
    const reported = state.lastEvaluation?.version === release?.version;
    if (showCanary() && !reported && (await examples.count()) > 0) await evaluateCanary();
  };
  // Not awaited: the page's swap does not wait for a canary evaluation.
  if (onRelease) onRelease(() => void afterRelease());

  window.fedgeFederated = Object.assign(state, {
    addExample,
    allExamples: () => examples.all(),
    clearExamples: () => run(() => examples.clear()).then(refreshCount),
    contribute: contributeOnce,
    evaluateCanary,
    reportHealth,
    benchmarkTraining,
    idle: () => queue,
  });
  await refreshCount();
  labelButtons();
  state.ready = true;
  void afterRelease();
  if (state.examples > 0) scheduleHealth(); // labels kept from an earlier visit may be unreported
  return state;
}
