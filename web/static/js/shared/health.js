// The live model's health, reported from this browser (issue 23).
//
// Once per window the server sets (the receipt's `next_report_at`: the
// pace), a page that has examples labelled since its last report runs the
// release it serves on them, with this page's TF.js backend, and reports
// numbers only (POST /v1/releases/{version}/health, fedge/wire/health.py's
// HealthReport): the loss and headline metric on those examples, and what
// the model predicted: a histogram of the predicted classes (a classifier)
// or its output quantiles (a regressor). The examples never leave the
// browser. The pace and the newest example reported are kept per device in
// localStorage (in memory where there is none, as in Node), so a reload
// neither reports early nor reports the same examples twice.

import { evaluate, exampleTensors, objectiveOf } from "./federated.js";
import { pageRuntime } from "./releases.js";

const QUANTILES = [0.1, 0.25, 0.5, 0.75, 0.9]; // fedge/wire/predictions.py QUANTILES

/** What `outputs` (n rows of `width` values) predicted: {histogram, quantiles}, exactly one set. */
export function predictionsOf(values, n) {
  const width = values.length / n;
  if (width > 1) {
    const histogram = new Array(width).fill(0);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < width; j++) if (values[i * width + j] > values[i * width + best]) best = j;
      histogram[best] += 1;
    }
    return { histogram, quantiles: null };
  }
  const sorted = Array.from(values).sort((a, b) => a - b);
  // Linear interpolation between the closest ranks (numpy's default).
  const at = (q) => {
    const position = q * (sorted.length - 1);
    const low = Math.floor(position);
    const high = Math.min(low + 1, sorted.length - 1);
    return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
  };
  return { histogram: null, quantiles: QUANTILES.map(at) };
}

/** Run `model` on `xs` (n examples) and summarise what it predicted. */
export function predict(tf, model, xs, n) {
  const values = tf.tidy(() => {
    const out = model.predict(xs, { batchSize: 256 });
    return (Array.isArray(out) ? out[0] : out).dataSync();
  });
  return predictionsOf(values, n);
}

/** The runtime a health report names: this page's TF.js backend (the server's list knows "tfjs" for any other). */
export function healthRuntime(tf) {
  return pageRuntime(tf) || "tfjs";
}

class Memory {
  constructor() {
    this.values = new Map();
  }
  getItem(key) {
    return this.values.has(key) ? this.values.get(key) : null;
  }
  setItem(key, value) {
    this.values.set(key, String(value));
  }
}

const fallback = new Memory();

/**
 * One device's health reports at the server's pace. `storage`: where the
 * pace is kept (localStorage in a browser).
 */
export class HealthReporter {
  constructor(device, storage = globalThis.localStorage || fallback) {
    this.device = device;
    this.storage = storage;
  }

  get key() {
    return `fedge-health:${this.device.id || "device"}`;
  }

  /** {nextReportAt (ms), since (ms: the newest example already reported)}. */
  get pace() {
    try {
      const kept = JSON.parse(this.storage.getItem(this.key) || "{}");
      return { nextReportAt: Number(kept.nextReportAt) || 0, since: Number(kept.since) || 0 };
    } catch {
      return { nextReportAt: 0, since: 0 };
    }
  }

  keep(pace) {
    this.storage.setItem(this.key, JSON.stringify(pace));
  }

  /**
   * Report on `release` (the one this page serves, `model` its TF.js model)
   * if the window allows and examples were labelled since the last report.
   * Resolves to {status: "waiting" | "no_labels" | "reported", body?, receipt?, nextReportAt}.
   * A refusal (409 already_reported, not_serving) is thrown as the server's ApiError.
   */
  async maybeReport({ tf, model, manifest, release, examples, now = Date.now() }) {
    const pace = this.pace;
    if (now < pace.nextReportAt) return { status: "waiting", nextReportAt: pace.nextReportAt };
    const fresh = examples.filter((example) => (example.added_at || 0) > pace.since);
    if (fresh.length === 0) return { status: "no_labels", nextReportAt: pace.nextReportAt };
    const objective = objectiveOf(manifest);
    const labels = fresh.map((example) => example.label);
    const { xs, ys } = exampleTensors(tf, manifest, objective, fresh);
    let scores;
    let predicted;
    try {
      scores = evaluate(tf, model, xs, labels, objective);
      predicted = predict(tf, model, xs, fresh.length);
    } finally {
      tf.dispose(xs);
      ys.dispose();
    }
    const body = {
      metric: objective.metric,
      loss: scores.loss,
      value: scores.metric,
      num_examples: fresh.length,
      runtime: healthRuntime(tf),
      histogram: predicted.histogram,
      quantiles: predicted.quantiles,
    };
    const receipt = await this.device.reportHealth(release.version, body);
    const nextReportAt = receipt.next_report_at * 1000;
    this.keep({ nextReportAt, since: Math.max(...fresh.map((example) => example.added_at || 0)) });
    return { status: "reported", version: release.version, body, receipt, nextReportAt };
  }
}
