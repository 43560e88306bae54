// A TF.js LayersModel's weights under the bundle manifest's canonical names.
//
// The manifest's `weights` is the one ordered naming that every runtime and
// the update codec share. TF.js variables are matched to it by
// `originalName` (the layer-scoped name the model was built with), never by
// position or `.name`: TF.js lists BatchNormalization's trainable weights
// first and its moving statistics last, and a second model in one page gets
// renamed variables (`conv1/kernel_1`). For recurrent layers TF.js drops
// the cell segment of Keras' name (`lstm/kernel` for `lstm/lstm_cell/kernel`),
// so a canonical name without its `*_cell` segments is the second choice.

export class WeightMappingError extends Error {}

function withoutCellSegments(name) {
  return name
    .split("/")
    .filter((part) => !part.endsWith("_cell"))
    .join("/");
}

function sameShape(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * The model's variables by canonical name, in the manifest's order: a Map
 * name -> LayerVariable. Every manifest weight must be found, with its
 * shape, and every model variable must be used once.
 */
export function canonicalVariables(model, manifestWeights) {
  const byOriginal = new Map();
  for (const variable of model.weights) {
    if (byOriginal.has(variable.originalName)) {
      throw new WeightMappingError(`two model weights are named ${variable.originalName}`);
    }
    byOriginal.set(variable.originalName, variable);
  }
  const mapped = new Map();
  const used = new Set();
  for (const { name, shape } of manifestWeights) {
    const variable = byOriginal.get(name) || byOriginal.get(withoutCellSegments(name));
    if (!variable) throw new WeightMappingError(`the model has no weight ${name}`);
    if (!sameShape(variable.shape, shape)) {
      throw new WeightMappingError(`${name}: shape [${variable.shape}] in the model, [${shape}] in the manifest`);
    }
    if (used.has(variable)) throw new WeightMappingError(`${name}: matched a weight twice`);
    used.add(variable);
    mapped.set(name, variable);
  }
  if (used.size !== model.weights.length) {
    const extra = model.weights.filter((v) => !used.has(v)).map((v) => v.originalName);
    throw new WeightMappingError(`model weights not in the manifest: ${extra.slice(0, 5).join(", ")}`);
  }
  return mapped;
}

/** The model's weight values: Map canonical name -> Float32Array (copies). */
export function readWeights(model, manifestWeights) {
  const values = new Map();
  for (const [name, variable] of canonicalVariables(model, manifestWeights)) {
    const tensor = variable.read();
    values.set(name, Float32Array.from(tensor.dataSync()));
  }
  return values;
}

/** Set every model weight from `values` (Map name -> {shape, data} or Float32Array). */
export function writeWeights(tf, model, manifestWeights, values) {
  for (const [name, variable] of canonicalVariables(model, manifestWeights)) {
    const entry = values.get(name);
    if (!entry) throw new WeightMappingError(`no value for weight ${name}`);
    const data = entry instanceof Float32Array ? entry : entry.data;
    if (entry.shape && !sameShape(entry.shape, variable.shape)) {
      throw new WeightMappingError(`${name}: shape [${entry.shape}], the model has [${variable.shape}]`);
    }
    // An int32 variable (a Normalization layer's count) takes its own dtype.
    const tensor = tf.tensor(data, variable.shape, variable.dtype === "int32" ? "int32" : "float32");
    variable.write(tensor);
    tensor.dispose();
  }
}
