// The canary evaluation of a candidate release, on this browser's examples.
//
// When the release meant for this device is on the `canary` channel, the
// page runs the candidate. This scores it and the live release (the
// baseline, found in the public GET /v1/releases listing) on the examples
// stored here, and reports numbers only (POST
// /v1/releases/{version}/evaluations, fedge/wire/canary.py's Evaluation):
// loss and the headline metric (accuracy, or mae for a regressor) of each, the number of examples, the candidate's
// inference time per example and which model the page serves. The
// candidate is the page's model; the baseline's TF.js model is downloaded
// and built as the page builds its own (model_store.js): manifest.json
// checked against the bundle id, every file against its sha256.
//
// Parity (issue 23): the candidate's golden samples (parity/golden.json,
// listed in its manifest, checked against its sha256) run on this page's
// TF.js backend and compared with the source model's outputs: the largest
// absolute difference and the top-1 agreement go with the report, with the
// runtime ("tfjs-" and the backend). A bundle without them reports none.
// With the runtime go the candidate's predictions on the examples (a class
// histogram or output quantiles, health.js): once the candidate is live,
// they are this device's baseline for the live model's health.

import { evaluate, exampleTensors, FederatedError, objectiveOf } from "./federated.js";
import { buildModel, bundleFiles } from "./model_store.js";
import { predict } from "./health.js";
import { pageRuntime } from "./releases.js";

const GOLDEN = "parity_golden"; // the manifest document (fedge/bundle/golden.py)

/**
 * Run the bundle's golden inputs on `model` (this backend) and compare with
 * the source model's outputs: {max_abs_error, top1_agreement, samples}, or
 * null for a bundle without golden samples.
 */
export async function goldenParity(tf, device, model, manifest, bundleId) {
  const record = manifest.documents?.[GOLDEN];
  if (!record) return null;
  const bytes = await device.bundleFile(bundleId, record.path, record.sha256);
  const golden = JSON.parse(new TextDecoder().decode(bytes));
  const rows = golden.rows;
  const first = golden.outputs[manifest.outputs[0].name];
  const values = tf.tidy(() => {
    const xs = manifest.inputs.map((spec) => {
      const given = golden.inputs[spec.name];
      return tf.tensor(given.values, given.shape, spec.dtype.startsWith("int") ? "int32" : "float32");
    });
    const out = model.predict(xs.length === 1 ? xs[0] : xs);
    return (Array.isArray(out) ? out[0] : out).dataSync();
  });
  if (values.length !== first.values.length) {
    throw new FederatedError("bad_golden", `the model gives ${values.length} values for ${first.values.length} golden outputs`);
  }
  const width = values.length / rows;
  let error = 0;
  let agree = 0;
  for (let i = 0; i < rows; i++) {
    let want = 0;
    let got = 0;
    for (let j = 0; j < width; j++) {
      const k = i * width + j;
      const diff = Math.abs(values[k] - first.values[k]);
      error = Number.isFinite(diff) ? Math.max(error, diff) : 1e9;
      if (first.values[k] > first.values[i * width + want]) want = j;
      if (values[k] > values[i * width + got]) got = j;
    }
    if (want === got) agree += 1;
  }
  return { max_abs_error: Math.min(error, 1e9), top1_agreement: agree / rows, samples: rows };
}

/** The live release's record from the public listing ({version, bundle_id, ...}), or null. */
export async function liveRelease(device) {
  const response = await fetch(`${device.base}/v1/releases`);
  if (!response.ok) throw new FederatedError("no_listing", `GET /v1/releases: HTTP ${response.status}`);
  const listing = await response.json();
  const version = listing.rollout?.live;
  if (version == null) return null;
  return listing.releases.find((record) => record.version === version) || null;
}

/**
 * Score the candidate (the page's model, release `candidate`) and the live
 * baseline on `examples`, report the numbers, and resolve to {version,
 * body, receipt}: `body` is exactly what was sent.
 */
export async function evaluateCandidate({ tf, device, model, manifest, candidate, examples, onProgress = () => {} }) {
  if (candidate.channel !== "canary") throw new FederatedError("not_canary", `release ${candidate.version} is ${candidate.channel}, not a canary`);
  if (examples.length === 0) throw new FederatedError("no_examples", "store a few corrections first");
  const objective = objectiveOf(manifest);
  onProgress("baseline", "looking up the live release", 0.1);
  const live = await liveRelease(device);
  if (!live || live.version === candidate.version) {
    throw new FederatedError("no_baseline", "there is no live release to compare the candidate with");
  }
  onProgress("baseline", `downloading live release v${live.version} (bundle ${live.bundle_id.slice(0, 12)})`, 0.3);
  // The page's own path: manifest.json against the bundle id, each file
  // against the manifest, the model built from those bytes. Not cached: the
  // page's cache keeps the releases it serves.
  const baseline = await bundleFiles(null, device, live);
  const baselineModel = await buildModel(baseline.manifest, baseline.files, tf);
  const labels = examples.map((example) => example.label);
  const { xs, ys } = exampleTensors(tf, manifest, objective, examples);
  let scores;
  let predicted;
  try {
    onProgress("evaluate", `scoring v${candidate.version} and v${live.version} on ${examples.length} examples`, 0.6);
    evaluate(tf, model, xs, labels, objective); // warm-up: the latency is not the first call's
    const candidateScores = evaluate(tf, model, xs, labels, objective);
    const baselineScores = evaluate(tf, baselineModel, xs, labels, objective);
    scores = { candidate: candidateScores, baseline: baselineScores };
    predicted = predict(tf, model, xs, examples.length);
  } finally {
    tf.dispose(xs);
    ys.dispose();
    baselineModel.dispose();
  }
  onProgress("parity", `running v${candidate.version}'s golden samples on ${tf.getBackend()}`, 0.8);
  // A golden file that cannot be read or run leaves the report without
  // parity; the evaluation itself still goes out.
  const parity = await goldenParity(tf, device, model, manifest, candidate.bundle_id).catch((error) => {
    onProgress("parity", `no parity check: ${error.message || error}`, 0.8);
    return null;
  });
  const body = {
    baseline_version: live.version,
    metric: objective.metric,
    candidate: { loss: scores.candidate.loss, [objective.metric]: scores.candidate.metric },
    baseline: { loss: scores.baseline.loss, [objective.metric]: scores.baseline.metric },
    num_examples: examples.length,
    latency_ms: scores.candidate.latencyMs,
    using: "candidate", // the page serves the release meant for it
  };
  const runtime = pageRuntime(tf);
  if (runtime) body.runtime = runtime;
  if (runtime && parity) body.parity = parity;
  if (runtime) body.predictions = predicted;
  onProgress("report", `reporting to release v${candidate.version}`, 0.9);
  const receipt = await device.reportEvaluation(candidate.version, body);
  onProgress("done", "reported", 1);
  return { version: candidate.version, body, receipt };
}
