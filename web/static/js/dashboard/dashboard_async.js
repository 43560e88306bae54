// The asynchronous aggregation panel (GET /v1/stats' `aggregation`): the
// version whose buffer is filling, versions per minute, the buffer fill,
// the training leases in use, uploads refused as too stale, and a small bar
// chart of the staleness of the recent accepted updates (inline SVG).
//
// renderAggregation(aggregation) shows the panel in async mode and hides
// it in sync mode; it also sets body[data-aggregation] (the CSS hides the
// round-only columns in async mode) and names rounds "versions".
// Every value is set with textContent or as an SVG attribute.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 320;
const HEIGHT = 120;
const PAD = { left: 8, right: 8, top: 16, bottom: 22 };

function node(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

// One bar per staleness (0 .. the largest seen, gaps drawn empty): its
// height the share of the updates, its count above it.
export function drawStaleness(svg, histogram) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  const entries = Object.entries(histogram || {}).map(([s, n]) => [Number(s), n]);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  svg.dataset.total = String(total);
  if (total === 0) {
    svg.append(node("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "chart-empty" }, "No accepted update yet"));
    return;
  }
  const most = Math.max(...entries.map(([s]) => s));
  const counts = new Map(entries);
  const peak = Math.max(...entries.map(([, n]) => n));
  const slot = (WIDTH - PAD.left - PAD.right) / (most + 1);
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  for (let staleness = 0; staleness <= most; staleness += 1) {
    const count = counts.get(staleness) ?? 0;
    const h = (count / peak) * innerH;
    const x = PAD.left + staleness * slot;
    const bar = node("rect", {
      x: x + slot * 0.15, y: PAD.top + innerH - h, width: slot * 0.7, height: h, class: "staleness-bar",
      "data-staleness": staleness, "data-count": count,
    });
    bar.append(node("title", {}, `${count} update${count === 1 ? "" : "s"} ${staleness} version${staleness === 1 ? "" : "s"} behind`));
    svg.append(bar);
    svg.append(node("text", { x: x + slot / 2, y: PAD.top + innerH - h - 3, "text-anchor": "middle", class: "axis-label" }, String(count)));
    svg.append(node("text", { x: x + slot / 2, y: HEIGHT - 6, "text-anchor": "middle", class: "axis-label" }, String(staleness)));
  }
}

function setText(id, text) {
  document.getElementById(id).textContent = text;
}

export function renderAggregation(aggregation) {
  const mode = aggregation?.mode ?? "sync";
  document.body.dataset.aggregation = mode;
  const panel = document.getElementById("aggregation");
  panel.hidden = mode !== "async";
  document.getElementById("rounds-title").textContent = mode === "async" ? "Versions" : "Rounds";
  if (mode !== "async") return;
  setText("async-version", String(aggregation.version));
  setText("async-rate", aggregation.versions_per_minute.toFixed(aggregation.versions_per_minute < 10 ? 2 : 0));
  const { filled, size } = aggregation.buffer;
  setText("async-buffer", `${filled} / ${size}`);
  const meter = document.getElementById("async-buffer-meter");
  meter.max = size;
  meter.value = Math.min(filled, size);
  const { in_use: inUse, limit } = aggregation.concurrency;
  setText("async-concurrency", `${inUse} / ${limit}`);
  setText("async-refused-stale", String(aggregation.refused_stale));
  drawStaleness(document.getElementById("staleness-chart"), aggregation.staleness_histogram);
}
