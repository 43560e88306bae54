// Keras 2's Normalization layer for tfjs-layers 4.22, which has none.
//
// `fedge convert` writes a model with a Normalization layer as a layers
// model (so the browser can train the layers around it) only because this
// class is registered before the model is loaded: by the page, the SDK and
// the Node parity runner, all through `registerNormalization(tf)`.
//
// The math is Keras 2.14's `Normalization.call` (invert=False):
//   (x - mean) / max(sqrt(variance), 1e-7)        (1e-7: backend.epsilon())
// and for invert=True: mean + x * max(sqrt(variance), 1e-7).
// Mean and variance come from the layer's config when it was built with
// them (no weights then), else they are non-trainable weights named as
// Keras names them (`mean`, `variance`, and the int `count` that `adapt`
// kept), so tfjs loads the converted weights onto them by name. Training
// never moves them: they are not trainable, and the server keeps a
// Normalization layer's weights out of the average.

const EPSILON = 1e-7;
const registered = new WeakSet();

function asList(value) {
  if (value === null || value === undefined) return null;
  return Array.isArray(value) ? value : [value];
}

/** The axes Keras keeps (not reduced), made non-negative and sorted, for an input of `ndim` axes. */
export function keptAxes(axis, ndim) {
  const axes = asList(axis) ?? [-1];
  for (const a of axes) {
    if (!Number.isInteger(a) || a < -ndim || a >= ndim) {
      throw new Error(`Normalization: axis ${a} is out of range for an input of ${ndim} axes`);
    }
  }
  return axes.map((a) => (a < 0 ? a + ndim : a)).sort((a, b) => a - b);
}

/** Define and register the `Normalization` class on this TF.js instance (once). */
export function registerNormalization(tf) {
  if (registered.has(tf)) return;

  class Normalization extends tf.layers.Layer {
    constructor(config = {}) {
      super(config);
      this.axis = asList(config.axis) ?? [-1];
      this.invert = Boolean(config.invert);
      this.fixedMean = config.mean ?? null;
      this.fixedVariance = config.variance ?? null;
      if ((this.fixedMean === null) !== (this.fixedVariance === null)) {
        throw new Error("Normalization: give both mean and variance, or neither");
      }
    }

    build(inputShape) {
      const shape = Array.isArray(inputShape[0]) ? inputShape[0] : inputShape;
      const keep = keptAxes(this.axis, shape.length);
      if (keep.some((d) => shape[d] == null)) {
        throw new Error(`Normalization: the kept axes [${keep}] of [${shape}] must have a known size`);
      }
      const statShape = keep.map((d) => shape[d]);
      this.broadcastShape = shape.map((d, i) => (keep.includes(i) ? d : 1));
      if (this.fixedMean === null) {
        this.mean = this.addWeight("mean", statShape, "float32", tf.initializers.zeros(), null, false);
        this.variance = this.addWeight("variance", statShape, "float32", tf.initializers.ones(), null, false);
        // tensorflowjs writes Keras' int64 count as int32.
        this.count = this.addWeight("count", [], "int32", tf.initializers.zeros(), null, false);
      }
      this.built = true;
    }

    statistics() {
      const size = this.broadcastShape.reduce((a, b) => a * b, 1);
      if (this.fixedMean !== null) {
        const fill = (v) => tf.mul(tf.ones([size]), tf.tensor(asList(v), undefined, "float32")).reshape(this.broadcastShape);
        return [fill(this.fixedMean), fill(this.fixedVariance)];
      }
      return [this.mean.read().reshape(this.broadcastShape), this.variance.read().reshape(this.broadcastShape)];
    }

    call(inputs) {
      return tf.tidy(() => {
        const x = tf.cast(Array.isArray(inputs) ? inputs[0] : inputs, "float32");
        const [mean, variance] = this.statistics();
        const scale = tf.maximum(tf.sqrt(variance), EPSILON);
        return this.invert ? tf.add(mean, tf.mul(x, scale)) : tf.div(tf.sub(x, mean), scale);
      });
    }

    computeOutputShape(inputShape) {
      return inputShape;
    }

    getConfig() {
      return { ...super.getConfig(), axis: this.axis, invert: this.invert, mean: this.fixedMean, variance: this.fixedVariance };
    }
  }
  Normalization.className = "Normalization";
  tf.serialization.registerClass(Normalization);
  registered.add(tf);
}
