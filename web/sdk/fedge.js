// The fedge web SDK: one ES module any page (or Node) imports to run a fedge
// model and take part in federated rounds as a device.
//
//   const { FedgeClient } = await import("https://SERVER/sdk/fedge.js");
//   const client = await FedgeClient.connect("https://SERVER", { enrol: true });
//   client.model;                                   // inputs, outputs, labels (the manifest)
//   await client.predict({ features: [[1, 2, 3, 4, 5, 6]] });
//   await client.addExample({ features: [1, 2, 3, 4, 5, 6] }, 2);
//   await client.joinRound({ onProgress });         // resolves to the receipt
//   client.on("release", ({ release }) => ...);      // a verified swap
//   await client.evaluateCanary();
//   await client.reportHealth();                   // the live model's health, at the server's pace
//
// It is the demo page's own code (web/static/js/shared/), served by `fedge
// serve` at /sdk/fedge.js beside it; nothing here is a second copy. Every
// failure is a typed error with a stable `code`: FedgeError (bad input, a
// label out of range, a tampered bundle, a server that cannot be reached)
// or ApiError (the server's own JSON error: `code`, `status`). Bad input
// changes nothing stored: inputs and labels are checked before an example
// is kept, and a bundle before it is cached or used.
//
// TF.js: the page's global `tf` (tf.min.js), or `connect(url, {tf})` (Node:
// `await import("@tensorflow/tfjs")`, the cpu backend).

import { ApiError, Device } from "../static/js/shared/api.js";
import { evaluateCandidate } from "../static/js/shared/canary.js";
import { ExampleStore } from "../static/js/shared/examples.js";
import { HealthReporter } from "../static/js/shared/health.js";
import { FederatedError, checkLabel, contribute, objectiveOf } from "../static/js/shared/federated.js";
import { FedgeError, checkInputs, describeModel, runModel, tokenize } from "../static/js/shared/model_io.js";
import { ModelStore, buildModel, bundleFiles } from "../static/js/shared/model_store.js";
import { FedgeObserver } from "../static/js/shared/observer.js";
import { ReleaseWatcher, currentRelease } from "../static/js/shared/releases.js";

/** The server API this SDK speaks (the `/v1/` paths; openapi.yaml's info.version). */
export const API_VERSION = "1";
export const SDK_VERSION = "1.0.0";

export { ApiError, FedgeError, FederatedError, FedgeObserver, tokenize };

/** Examples kept in memory where there is no IndexedDB (Node); the browser's are in IndexedDB. */
class MemoryExamples {
  constructor() {
    this.records = [];
  }
  async open() {
    return this;
  }
  async add(inputs, label) {
    this.records.push({ inputs, label, added_at: Date.now() });
    return this.records.length;
  }
  async all() {
    return this.records.map((r) => ({ ...r }));
  }
  async count() {
    return this.records.length;
  }
  async clear() {
    this.records = [];
  }
}

/** A network failure (server down, refused, CORS) as a typed error. */
async function reaching(serverUrl, work) {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiError || error instanceof FedgeError || error?.code) throw error;
    if (error instanceof TypeError) {
      throw new FedgeError("server_unreachable", `could not reach the fedge server at ${serverUrl || "this origin"}: ${error.message}`);
    }
    throw error;
  }
}

export class FedgeClient {
  constructor({ tf, device, serverUrl, store, examples }) {
    this.tf = tf;
    this.device = device;
    this.serverUrl = serverUrl;
    this.store = store;
    this.examples = examples;
    this.release = null;
    this.manifest = null;
    this.tfModel = null;
    this.described = null;
    this.listeners = { release: [], same: [], error: [] };
    this.loaded = null; // {from: "network" | "cache", ms}: how the model in use was loaded
    this.watcher = null;
  }

  /**
   * Connect to a fedge server: enrol (`{enrol: true}` or `{enrol: {key}}`
   * for a server that needs an enrolment key) or use a device's
   * `{token, deviceId}`; then load the release meant for this device,
   * verified (manifest against the bundle id, every file against its sha256).
   */
  static async connect(serverUrl = "", options = {}) {
    const tf = options.tf || globalThis.tf;
    if (!tf?.loadLayersModel) throw new FedgeError("no_tfjs", "TF.js is not loaded: add /vendor/tfjs/tf.min.js to the page, or pass {tf} (Node: await import('@tensorflow/tfjs'))");
    const base = String(serverUrl).replace(/\/+$/, "");
    const device = new Device(base);
    await reaching(base, async () => {
      if (options.token) {
        device.token = options.token;
        device.id = options.deviceId ?? null;
      } else if (options.enrol) {
        await device.enrol(typeof options.enrol === "object" ? options.enrol.key ?? null : null);
      } else {
        throw new FedgeError("no_credentials", "give {token} (a device token) or {enrol: true}");
      }
    });
    const store = globalThis.indexedDB ? await ModelStore.open().catch(() => null) : null;
    const examples = globalThis.indexedDB ? await new ExampleStore(options.examplesDb || "fedge-examples").open() : new MemoryExamples();
    const client = new FedgeClient({ tf, device, serverUrl: base, store, examples });
    await client.load(await reaching(base, () => currentRelease(device)));
    return client;
  }

  /**
   * Load (verified) and switch to `release`; the model in use is kept if
   * anything fails. One warm-up run on zeros first (the first predict on a
   * model builds its kernels), so the swap does not slow the next predict.
   */
  async load(release) {
    const started = globalThis.performance?.now() ?? Date.now();
    const bundle = await reaching(this.serverUrl, () => bundleFiles(this.store, this.device, release));
    const built = await buildModel(bundle.manifest, bundle.files, this.tf);
    const described = describeModel(bundle.manifest);
    if (described.inputs.every((input) => input.size != null)) {
      const zeros = Object.fromEntries(described.inputs.map((input) => [input.name, [new Array(input.size).fill(0)]]));
      await runModel(this.tf, built, described, checkInputs(described, zeros));
    }
    const old = this.tfModel;
    this.tfModel = built;
    this.manifest = bundle.manifest;
    this.described = described;
    this.release = release;
    if (old) old.dispose();
    this.loaded = { from: bundle.from, ms: (globalThis.performance?.now() ?? Date.now()) - started };
    return { release, ...this.loaded };
  }

  /** The model: name, version, inputs and outputs by kind, labels, and whether this SDK can train it. */
  get model() {
    let trainable = true;
    let why = null;
    try {
      objectiveOf(this.manifest);
    } catch (error) {
      trainable = false;
      why = error.message;
    }
    return { ...this.described, features: this.manifest.features || {}, release: this.release, trainable, why, manifest: this.manifest };
  }

  /** Predict on `{inputName: rows}`; resolves to `{outputName: rows}`. Throws FedgeError for bad input. */
  async predict(inputs) {
    return runModel(this.tf, this.tfModel, this.described, checkInputs(this.described, inputs));
  }

  /** Keep one labelled example on this device (never sent); `inputs` is one row per input name. */
  async addExample(inputs, label) {
    const objective = objectiveOf(this.manifest);
    const rows = inputs && typeof inputs === "object" && !Array.isArray(inputs) ? Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, [v]])) : inputs;
    const checked = checkInputs(this.described, rows);
    const values = Object.fromEntries(Object.entries(checked.byName).map(([name, got]) => [name, Float32Array.from(got.values)]));
    await this.examples.add(values, checkLabel(objective, label));
    return this.examples.count();
  }

  async exampleCount() {
    return this.examples.count();
  }

  async clearExamples() {
    return this.examples.clear();
  }

  /**
   * Take part in the open round once: the task, the base checkpoint
   * (checked), local SGD on the stored examples with the bundle's loss, the
   * deltas uploaded. Resolves to {status: "contributed", receipt, metrics, ...}
   * or {status: "no_task", reason, retry_after_s}.
   */
  async joinRound({ onProgress = () => {}, shuffle = true, backend = "cpu", control = null } = {}) {
    const tf = this.tf;
    // `control`: how to switch TF.js backends for training ({getBackend, setBackend}); a page
    // that predicts meanwhile passes its own, which waits for its inference to finish.
    control ??= { getBackend: () => tf.getBackend(), setBackend: (name) => tf.setBackend(name) };
    return reaching(this.serverUrl, async () =>
      contribute({ tf, device: this.device, model: this.tfModel, manifest: this.manifest, examples: await this.examples.all(), control, backend, shuffle, onProgress }),
    );
  }

  /** Score this device's canary release against the live one on the stored examples; report numbers only. */
  async evaluateCanary({ onProgress = () => {} } = {}) {
    return reaching(this.serverUrl, async () =>
      evaluateCandidate({ tf: this.tf, device: this.device, model: this.tfModel, manifest: this.manifest, candidate: this.release, examples: await this.examples.all(), onProgress }),
    );
  }

  /**
   * Report how the release in use does on the examples labelled since the
   * last report (loss, metric, a histogram of predicted classes or output
   * quantiles: numbers only), once per window the server sets. Resolves to
   * {status: "reported", body, receipt, nextReportAt} or {status: "waiting"
   * | "no_labels", nextReportAt} (ms); a refusal is the server's ApiError.
   */
  async reportHealth({ now } = {}) {
    this.health ??= new HealthReporter(this.device);
    return reaching(this.serverUrl, async () =>
      this.health.maybeReport({ tf: this.tf, model: this.tfModel, manifest: this.manifest, release: this.release, examples: await this.examples.all(), now }),
    );
  }

  /**
   * `on("release", ({release, manifest}) => ...)`: called after a new release is verified and swapped in.
   * `on("same", (release) => ...)`: a check found the same bundle (its channel may have changed).
   * `on("error", (error) => ...)`: a release check or swap failed; the model in use stays.
   */
  on(event, callback) {
    if (!(event in this.listeners)) throw new FedgeError("unknown_event", `no event ${JSON.stringify(event)}; events: ${Object.keys(this.listeners).join(", ")}`);
    this.listeners[event].push(callback);
    if (!this.watcher) this.watch();
    return () => (this.listeners[event] = this.listeners[event].filter((c) => c !== callback));
  }

  /** Ask the server now for this device's release; swaps it in when it is another bundle. */
  async checkRelease() {
    const release = await reaching(this.serverUrl, () => currentRelease(this.device));
    if (release.bundle_id !== this.release?.bundle_id) await this.swap(release);
    else this.release = release;
    return this.release;
  }

  async swap(release) {
    await this.load(release);
    for (const callback of this.listeners.release) await callback({ release, manifest: this.manifest });
  }

  watch() {
    if (typeof globalThis.EventSource !== "function") return; // Node: call checkRelease() instead
    this.watcher = new ReleaseWatcher(this.device, {
      running: () => this.release?.bundle_id,
      onRelease: (release) => this.swap(release),
      onSame: async (release) => {
        this.release = release;
        for (const callback of this.listeners.same) await callback(release);
      },
      onError: (error) => {
        if (this.listeners.error.length === 0) console.warn("fedge: a release check failed", error);
        for (const callback of this.listeners.error) callback(error);
      },
    });
    this.watcher.start();
    // Listening now; a release published since connect() loaded is asked for once.
    void this.watcher.check();
  }

  close() {
    this.watcher?.stop();
    this.watcher = null;
    this.tfModel?.dispose();
    this.tfModel = null;
  }
}
