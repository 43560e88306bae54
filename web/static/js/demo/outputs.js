// The demo page's outputs, by kind (model_io.js describeModel): class
// probabilities as one bar per label, a regression value, or plain values,
// plus any further named outputs in one line. demo.js decides what to show
// and keeps the state; this module only draws it.

const $ = (id) => document.getElementById(id);

/** The index of the largest value. */
export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** One row per label: the label, a bar, the percentage. */
export function buildBars(labels) {
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

/**
 * Lay the output area out for a model's first output: bars for a
 * classifier (rebuilt when the number of labels changes), none otherwise;
 * long labels and regression values get the wider label column and answer box.
 */
export function layOutOutputs(head, labels) {
  const named = labels.some((label) => label.length > 1) || head.kind === "regression";
  $("probs").classList.toggle("named", named);
  $("predicted").classList.toggle("named", named);
  if (head.kind !== "classes") $("probs").replaceChildren();
  else if ($("probs").children.length !== labels.length) buildBars(labels);
}

/** Class probabilities; `blank`: nothing to predict on yet. Returns the best class's index. */
export function showBars(probs, labels, blank) {
  const best = argmax(probs);
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
  return best;
}

const listed = (values) => values.map((v) => v.toFixed(4)).join(", ");

/**
 * A regression value (the first output of width 1) or plain values, and
 * any further outputs by name. Returns the regression value, else null.
 */
export function showValues(described, outputs) {
  const head = described.outputs[0];
  const row = outputs[head.name];
  const regression = head.kind === "regression";
  $("predicted").textContent = regression ? String(Number(row[0].toPrecision(4))) : "–";
  $("predicted").classList.remove("faint");
  $("confidence").textContent = regression ? `${head.name}, predicted value` : `${head.name}: ${listed(row)}`;
  const extra = described.outputs.slice(1).map((o) => `${o.name}: ${listed(outputs[o.name])}`);
  if (extra.length) $("confidence").textContent += ` · ${extra.join(" · ")}`;
  return regression ? row[0] : null;
}
