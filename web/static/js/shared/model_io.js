// What a bundle's model takes and gives, read from its manifest, and the
// checks every prediction and example goes through before TF.js sees it.
//
// The page builds its widgets from `describeModel(manifest)`: one entry per
// manifest input (kind image, vector, sequence, or unsupported with the
// reason) and per output (classes with labels, a regression value, or plain
// values). `toInputTensors` turns `{name: rows}` into tensors in the
// manifest's input order, and refuses (FedgeError with a stable code) a
// name the model does not have, a missing input, a row of the wrong size
// and a value that is not a finite number: nothing reaches TF.js unchecked,
// so a user never sees a raw TF.js shape error.

export class FedgeError extends Error {
  /** `code`: stable, as the server's JSON errors; `details`: what was wrong, for programs. */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "FedgeError";
    this.code = code;
    this.details = details;
  }
}

const product = (dims) => dims.reduce((a, b) => a * b, 1);

/** The [min, max] of an input over the parity samples, if the bundle records it. */
/**
 * Text as token ids for a sequence input with a vocabulary (the manifest's
 * `vocabularies`, id = index: 0 padding, 1 out-of-vocabulary): lowercased,
 * split on everything but letters and digits, each word's id (1 when it is
 * not in the vocabulary), cut or padded with 0 to `length`. Returns
 * {ids: Int32Array, words, unknown: [words not in the vocabulary], cut: words dropped}.
 */
export function tokenize(text, vocabulary, length) {
  const index = new Map(vocabulary.map((token, id) => [token, id]));
  const words = String(text).toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  const ids = new Int32Array(length);
  const unknown = [];
  words.slice(0, length).forEach((word, i) => {
    const id = index.get(word);
    if (id === undefined || id < 2) unknown.push(word);
    ids[i] = id === undefined || id < 2 ? 1 : id;
  });
  return { ids, words, unknown, cut: Math.max(0, words.length - length) };
}

export function recordedRange(manifest, name) {
  for (const target of ["tfjs", "tflite", "coreml"]) {
    const range = manifest.parity?.[target]?.inputs?.range?.[name];
    if (Array.isArray(range) && range.length === 2) return range.map(Number);
  }
  return null;
}

/** How an image's 0..255 pixels become the model's values: [low, high] from the recorded range. */
export function pixelScale(range) {
  if (!range) return [0, 1];
  const [min, max] = range;
  if (max > 1.5) return [0, 255];
  if (min < -0.01) return [-1, 1];
  return [0, 1];
}

function describeInput(manifest, spec, index) {
  const dims = spec.shape.slice(1);
  const base = {
    name: spec.name,
    index,
    shape: dims,
    dtype: spec.dtype,
    size: dims.every((d) => d != null) ? product(dims) : null,
    range: recordedRange(manifest, spec.name),
    why: "",
  };
  if (dims.some((d) => d == null)) {
    return { ...base, kind: "unsupported", why: `its shape [${dims.map((d) => d ?? "any")}] has a free dimension besides the batch, so no fixed form fits it` };
  }
  const integer = spec.dtype.startsWith("int");
  if (dims.length === 1 && integer) {
    const vocabulary = manifest.vocabularies?.[spec.name];
    return { ...base, kind: "sequence", length: dims[0], vocabulary: Array.isArray(vocabulary) ? vocabulary : null };
  }
  if (dims.length === 1) {
    const names = manifest.features?.[spec.name];
    const features = Array.isArray(names) && names.length === dims[0] ? names : dims[0] > 64 ? null : Array.from({ length: dims[0] }, (_, i) => `${spec.name}[${i}]`);
    if (!features) return { ...base, kind: "unsupported", why: `a vector of ${dims[0]} values is too long for a form (64 at most); the SDK's predict() takes it` };
    return { ...base, kind: "vector", features };
  }
  if (dims.length === 3 && [1, 3, 4].includes(dims[2]) && !integer) {
    return { ...base, kind: "image", height: dims[0], width: dims[1], channels: dims[2], scale: pixelScale(base.range) };
  }
  return { ...base, kind: "unsupported", why: `a ${dims.length}-D ${spec.dtype} input of shape [${dims}] has no widget (images are height x width x 1, 3 or 4 channels); the SDK's predict() takes it` };
}

function describeOutput(manifest, spec, index, single) {
  const dims = spec.shape.slice(1);
  const width = dims.length ? dims[dims.length - 1] : 1;
  const base = { name: spec.name, index, shape: dims, width };
  if (single && Array.isArray(manifest.labels) && manifest.labels.length === width) {
    return { ...base, kind: "classes", labels: manifest.labels };
  }
  if (single && width > 1 && String(trainingRecord(manifest)?.loss || "").includes("categorical")) {
    return { ...base, kind: "classes", labels: Array.from({ length: width }, (_, i) => String(i)) };
  }
  if (product(dims) === 1) return { ...base, kind: "regression" };
  return { ...base, kind: "values" };
}

export function trainingRecord(manifest) {
  return manifest.artifacts?.tflite?.training || manifest.training || null;
}

/** The manifest's inputs and outputs as widgets need them; see the module's comment. */
export function describeModel(manifest) {
  if (!Array.isArray(manifest?.inputs) || !Array.isArray(manifest?.outputs)) {
    throw new FedgeError("bad_manifest", "the manifest lists no inputs or outputs");
  }
  const single = manifest.outputs.length === 1;
  return {
    name: manifest.name,
    version: manifest.version,
    labels: manifest.labels || null,
    inputs: manifest.inputs.map((spec, i) => describeInput(manifest, spec, i)),
    outputs: manifest.outputs.map((spec, i) => describeOutput(manifest, spec, i, single)),
    format: manifest.artifacts?.tfjs?.format || null,
  };
}

function flatten(value, out) {
  if (Array.isArray(value)) for (const item of value) flatten(item, out);
  else out.push(value);
  return out;
}

/**
 * Rows of one input as one flat Float64Array: `rows` is an array of rows
 * (each flat or nested to the input's shape) or one flat (typed) array of
 * whole rows. Throws FedgeError for a wrong size or a value that is not a
 * finite number.
 */
export function flatRows(input, rows) {
  const size = input.size;
  if (size == null) return null;
  let values;
  let count;
  if (ArrayBuffer.isView(rows) || (Array.isArray(rows) && rows.length && !Array.isArray(rows[0]) && !ArrayBuffer.isView(rows[0]))) {
    values = Array.from(rows);
    count = values.length / size;
    if (!Number.isInteger(count) || count === 0) {
      throw new FedgeError("bad_shape", `input ${input.name} takes rows of ${size} values [${input.shape}]; got ${values.length} values`, { input: input.name, expected: input.shape, got: values.length });
    }
  } else if (Array.isArray(rows) && rows.length) {
    values = [];
    for (const [i, row] of rows.entries()) {
      const flat = flatten(ArrayBuffer.isView(row) ? Array.from(row) : row, []);
      if (flat.length !== size) {
        throw new FedgeError("bad_shape", `input ${input.name}, row ${i}: ${flat.length} values; it takes ${size} [${input.shape}]`, { input: input.name, row: i, expected: input.shape, got: flat.length });
      }
      values.push(...flat);
    }
    count = rows.length;
  } else {
    throw new FedgeError("bad_shape", `input ${input.name}: give an array of rows`, { input: input.name });
  }
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = typeof values[i] === "number" ? values[i] : Number.NaN;
    if (!Number.isFinite(v)) {
      throw new FedgeError("not_finite", `input ${input.name}: value ${i % size} of row ${Math.floor(i / size)} is ${values[i]}, not a finite number`, { input: input.name, row: Math.floor(i / size), index: i % size });
    }
    if (input.dtype.startsWith("int") && !Number.isInteger(v)) {
      throw new FedgeError("not_integer", `input ${input.name} takes integers (token ids); got ${v}`, { input: input.name });
    }
    out[i] = v;
  }
  return { values: out, count };
}

/** `{name: rows}` checked against the model: {byName: {name: {values, count}}, count}. */
export function checkInputs(described, inputs) {
  if (inputs == null || typeof inputs !== "object" || Array.isArray(inputs) || ArrayBuffer.isView(inputs)) {
    throw new FedgeError("bad_inputs", `give the inputs by name: {${described.inputs.map((i) => `${i.name}: rows`).join(", ")}}`);
  }
  const known = new Set(described.inputs.map((i) => i.name));
  for (const name of Object.keys(inputs)) {
    if (!known.has(name)) {
      throw new FedgeError("unknown_input", `the model has no input ${JSON.stringify(name)}; it takes ${[...known].map((n) => JSON.stringify(n)).join(", ")}`, { input: name });
    }
  }
  const byName = {};
  let count = null;
  for (const input of described.inputs) {
    if (!(input.name in inputs)) throw new FedgeError("missing_input", `input ${JSON.stringify(input.name)} is missing`, { input: input.name });
    if (input.size == null) throw new FedgeError("unsupported_input", `input ${input.name}: ${input.why}`, { input: input.name });
    const rows = flatRows(input, inputs[input.name]);
    if (count != null && rows.count !== count) {
      throw new FedgeError("bad_shape", `input ${input.name} has ${rows.count} rows, the others ${count}`, { input: input.name });
    }
    count = rows.count;
    byName[input.name] = rows;
  }
  return { byName, count };
}

/** The checked inputs as tensors, in the manifest's order (one tensor, or an array for several). */
export function toInputTensors(tf, described, checked) {
  const tensors = described.inputs.map((input) => {
    const { values, count } = checked.byName[input.name];
    const dtype = input.dtype.startsWith("int") ? "int32" : "float32";
    return tf.tensor(dtype === "int32" ? Int32Array.from(values) : Float32Array.from(values), [count, ...input.shape], dtype);
  });
  return tensors.length === 1 ? tensors[0] : tensors;
}

/** Run the model on checked inputs: {outputName: rows (arrays of the output's values)}. */
export async function runModel(tf, model, described, checked) {
  const xs = toInputTensors(tf, described, checked);
  const graph = typeof tf.GraphModel === "function" && model instanceof tf.GraphModel;
  let outputs;
  try {
    // A graph model takes its inputs by signature name, which the manifest's input names are.
    const given = graph && Array.isArray(xs) ? Object.fromEntries(described.inputs.map((input, i) => [input.name, xs[i]])) : xs;
    outputs = model.predict(given);
  } finally {
    tf.dispose(xs);
  }
  let list = Array.isArray(outputs) ? outputs : [outputs];
  if (!Array.isArray(outputs) && typeof outputs.data !== "function") {
    // A graph model's NamedTensorMap: by output name, else in its own order.
    const values = Object.values(outputs);
    list = described.outputs.map((output, i) => outputs[output.name] || values[i]);
  }
  try {
    const result = {};
    for (const [i, output] of described.outputs.entries()) {
      const data = await list[i].data();
      const width = data.length / checked.count;
      result[output.name] = Array.from({ length: checked.count }, (_, r) => Array.from(data.subarray(r * width, (r + 1) * width)));
    }
    return result;
  } finally {
    tf.dispose(list);
  }
}
