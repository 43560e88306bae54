// The demo page's input widgets for any model, built from its manifest
// (model_io.js describeModel): a form per vector input (one number field per
// feature, named as the manifest names them, with the parity samples' range
// as a hint), a file picker, a drawing pad or the camera per image input
// (each image resized to the input's height x width and scaled to the range
// the bundle records; a drawing is dark ink on white; a camera snapshot is
// the whole frame, camera.js), a field of token ids per sequence input, or
// a text field when the bundle carries its vocabulary (tokenised as
// model_io.js tokenize says, the ids shown). An input the page has no widget
// for is named, with the reason, instead of a raw TF.js error.
//
// The digits canvas (canvas.js) stays the reference model's widget; demo.js
// picks it. No inline script or style: the page runs under a strict CSP.

import { cameraBox } from "./camera.js";
import { tokenize } from "../shared/model_io.js";
import { DrawingPad } from "./canvas.js";

const text = (tag, content, className = "") => {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className) el.className = className;
  return el;
};

const fmt = (x) => (Math.abs(x) >= 1000 || (Math.abs(x) < 0.01 && x !== 0) ? x.toExponential(2) : String(Number(x.toFixed(3))));

function vectorWidget(input, changed) {
  const set = document.createElement("fieldset");
  set.className = "input-vector";
  set.append(text("legend", input.name));
  const fields = input.features.map((feature) => {
    const label = document.createElement("label");
    label.className = "feature-field";
    const field = document.createElement("input");
    field.type = "number";
    field.step = "any";
    field.inputMode = "decimal";
    field.dataset.feature = feature;
    if (input.range) field.placeholder = `${fmt(input.range[0])} … ${fmt(input.range[1])}`;
    field.addEventListener("input", changed);
    label.append(text("span", feature, "feature"), field);
    set.append(label);
    return field;
  });
  return {
    element: set,
    read() {
      const values = fields.map((f) => (f.value.trim() === "" ? Number.NaN : Number(f.value)));
      const empty = input.features.filter((_, i) => !Number.isFinite(values[i]));
      return empty.length ? { missing: `fill in ${empty.join(", ")}` } : { values: Float32Array.from(values) };
    },
    fill(values) {
      fields.forEach((f, i) => (f.value = String(values[i])));
    },
  };
}

/** An image's pixels as the model's values: resized to the input's size, `channels` kept, scaled. */
export function pixelsToInput(rgba, input) {
  const { height, width, channels, scale } = input;
  const [low, high] = scale;
  const out = new Float32Array(height * width * channels);
  for (let p = 0; p < height * width; p++) {
    const r = rgba[p * 4];
    const g = rgba[p * 4 + 1];
    const b = rgba[p * 4 + 2];
    const px = channels === 1 ? [(r + g + b) / 3] : channels === 3 ? [r, g, b] : [r, g, b, rgba[p * 4 + 3]];
    px.forEach((v, c) => (out[p * channels + c] = low + (v / 255) * (high - low)));
  }
  return out;
}

function imageWidget(input, changed) {
  const box = document.createElement("div");
  box.className = "input-image";
  const label = document.createElement("label");
  label.className = "feature-field";
  const picker = document.createElement("input");
  picker.type = "file";
  picker.accept = "image/*";
  label.append(text("span", `${input.name}: an image file`, "feature"), picker);
  const preview = document.createElement("canvas");
  preview.className = "preview input-preview";
  preview.width = input.width;
  preview.height = input.height;
  preview.setAttribute("aria-label", `The ${input.width}×${input.height} image the model sees`);
  const note = text("p", `Resized to ${input.width}×${input.height}, ${input.channels} channel(s), values ${input.scale[0]}–${input.scale[1]}.`, "muted small");
  const { pad, frame } = drawingPad(input);
  const camera = cameraBox(input, (video) => {
    drawn = false;
    take(video);
  });
  box.append(label, text("span", `or draw ${input.name}:`, "feature"), frame, text("span", "or take a picture:", "feature"), camera, preview, note);
  let values = null;
  let drawn = false; // the input is the drawing (not a chosen file)
  const context = preview.getContext("2d", { willReadFrequently: true });
  /** Resize `source` (an image or the pad) to the input's size, over `background` when given. */
  const take = (source, background) => {
    context.clearRect(0, 0, input.width, input.height);
    if (background) {
      context.fillStyle = background;
      context.fillRect(0, 0, input.width, input.height);
    }
    context.drawImage(source, 0, 0, input.width, input.height);
    values = pixelsToInput(context.getImageData(0, 0, input.width, input.height).data, input);
    changed();
  };
  picker.addEventListener("change", async () => {
    const file = picker.files?.[0];
    if (!file) return;
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    drawn = false;
    take(bitmap);
    bitmap.close();
  });
  // A drawing replaces the chosen file or snapshot (and the other way round): the last one given is the input.
  pad.onChange = () => {
    if (pad.strokes > 0 || pad.pointer !== null) {
      drawn = true;
      take(pad.canvas, "#fff");
    } else if (drawn) {
      // The drawing was cleared: no input until something is drawn or chosen again.
      drawn = false;
      values = null;
      context.clearRect(0, 0, input.width, input.height);
      changed();
    }
  };
  return {
    element: box,
    read: () => (values ? { values } : { missing: `choose, draw or take an image for ${input.name}` }),
    fill(given) {
      values = Float32Array.from(given);
    },
  };
}

/** A drawing pad for an image input: the digits pad's strokes, on a canvas of its own. */
function drawingPad(input) {
  const frame = document.createElement("div");
  frame.className = "input-pad-frame";
  const canvas = document.createElement("canvas");
  canvas.className = "pad input-pad";
  canvas.setAttribute("aria-label", `Draw ${input.name}`);
  const clear = text("button", "Clear drawing", "button");
  clear.type = "button";
  frame.append(canvas, clear);
  const pad = new DrawingPad(canvas, () => {});
  clear.addEventListener("click", () => pad.clear());
  return { pad, frame };
}

/** Text for a sequence input whose bundle carries a vocabulary: tokenised as shown, then predicted. */
function textWidget(input, changed) {
  const box = document.createElement("div");
  box.className = "input-text";
  const label = document.createElement("label");
  label.className = "feature-field input-sequence";
  const field = document.createElement("input");
  field.type = "text";
  field.placeholder = `up to ${input.length} words`;
  label.append(text("span", `${input.name}: text`, "feature"), field);
  const shown = text("p", `Lowercased, split on anything but letters and digits; ${input.vocabulary.length - 2} known words, others are id 1.`, "muted small token-ids");
  box.append(label, shown);
  let got = null;
  field.addEventListener("input", () => {
    got = field.value.trim() ? tokenize(field.value, input.vocabulary, input.length) : null;
    if (got) {
      const notes = [got.unknown.length ? `not known: ${got.unknown.join(", ")}` : "", got.cut ? `${got.cut} word(s) past ${input.length} dropped` : ""].filter(Boolean);
      shown.textContent = `ids: ${Array.from(got.ids).join(" ")}${notes.length ? ` (${notes.join("; ")})` : ""}`;
    }
    changed();
  });
  return {
    element: box,
    read: () => (got && got.words.length ? { values: Float32Array.from(got.ids) } : { missing: `write some text for ${input.name}` }),
    fill(values) {
      // Ids back as their words (an example shown again); 0 is padding.
      const ids = Array.from(values).filter((id) => id > 0);
      field.value = ids.map((id) => input.vocabulary[id] ?? "?").join(" ");
      got = { ids: Int32Array.from(values), words: ids, unknown: [], cut: 0 };
    },
  };
}

function sequenceWidget(input, changed) {
  if (input.vocabulary) return textWidget(input, changed);
  const label = document.createElement("label");
  label.className = "feature-field input-sequence";
  const field = document.createElement("input");
  field.type = "text";
  field.placeholder = `up to ${input.length} token ids, e.g. 4 17 2`;
  field.addEventListener("input", changed);
  label.append(text("span", `${input.name}: token ids`, "feature"), field);
  return {
    element: label,
    read() {
      const parts = field.value.split(/[\s,]+/).filter(Boolean);
      if (!parts.length) return { missing: `give token ids for ${input.name}` };
      const ids = parts.map(Number);
      if (!ids.every(Number.isInteger) || ids.some((v) => v < 0)) return { missing: `${input.name}: token ids are whole numbers >= 0` };
      if (ids.length > input.length) return { missing: `${input.name} takes at most ${input.length} ids` };
      const padded = new Float32Array(input.length); // zeros after the ids: the usual padding id
      padded.set(ids);
      return { values: padded };
    },
    fill(values) {
      field.value = Array.from(values).join(" ");
    },
  };
}

const WIDGETS = { vector: vectorWidget, image: imageWidget, sequence: sequenceWidget };

/**
 * Build the widgets for `described.inputs` into `form`. Returns
 * {unsupported: [{name, why}], read(): {values: {name: Float32Array}} or
 * {missing: "what to do"}, fill(name, values)}.
 */
export function buildInputs(form, described, changed) {
  form.replaceChildren();
  const widgets = new Map();
  const unsupported = [];
  for (const input of described.inputs) {
    const make = WIDGETS[input.kind];
    if (!make) {
      unsupported.push({ name: input.name, why: input.why });
      form.append(text("p", `Input ${input.name}: the page has no widget for it: ${input.why}.`, "note"));
      continue;
    }
    const widget = make(input, changed);
    widgets.set(input.name, widget);
    form.append(widget.element);
  }
  return {
    unsupported,
    read() {
      if (unsupported.length) return { missing: unsupported.map((u) => `input ${u.name}: ${u.why}`).join("; ") };
      const values = {};
      for (const [name, widget] of widgets) {
        const got = widget.read();
        if (got.missing) return got;
        values[name] = got.values;
      }
      return { values };
    },
    fill(name, values) {
      widgets.get(name)?.fill(values);
      changed();
    },
  };
}
