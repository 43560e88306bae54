// A line chart of one metric over rounds, drawn as inline SVG (no library).
//
// drawChart(svg, points, options): points are {x: round id, y: value};
// each point is a <circle class="chart-point"> with data-round and
// data-value, so tests (and screen readers, through its <title>) can read it.

const SVG = "http://www.w3.org/2000/svg";
const DEFAULT_WIDTH = 600;
const HEIGHT = 220;
const PAD = { left: 52, right: 16, top: 14, bottom: 30 };

function node(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

// The y range: [0, 1] for a fraction (accuracy), else the data's own, padded.
function yRange(values, unit) {
  if (unit) return [0, 1];
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (high - low < 1e-9) {
    const half = Math.max(Math.abs(high) * 0.1, 0.05);
    low -= half;
    high += half;
  }
  const margin = (high - low) * 0.08;
  return [Math.max(0, low - margin), high + margin];
}

function tickLabel(value, unit) {
  if (unit) return `${Math.round(value * 100)}%`;
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

// The drawing is as wide as the element (in CSS pixels), so that its text
// keeps its size on a phone; draw again when the element's width changes.
export function drawChart(svg, points, { label, unit = false, empty = "No data yet", xName = "round" }) {
  const WIDTH = Math.max(280, Math.round(svg.getBoundingClientRect().width) || DEFAULT_WIDTH);
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.dataset.points = String(points.length);
  svg.dataset.metric = label;
  if (points.length === 0) {
    svg.append(node("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "chart-empty" }, empty));
    return;
  }
  const xs = points.map((p) => p.x);
  const [xLow, xHigh] = [Math.min(...xs), Math.max(...xs)];
  const [yLow, yHigh] = yRange(points.map((p) => p.y), unit);
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const sx = (x) => PAD.left + (xHigh === xLow ? innerW / 2 : ((x - xLow) / (xHigh - xLow)) * innerW);
  const sy = (y) => PAD.top + (1 - (y - yLow) / (yHigh - yLow)) * innerH;

  for (let i = 0; i <= 4; i += 1) {
    const value = yLow + ((yHigh - yLow) * i) / 4;
    const y = sy(value);
    svg.append(node("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid-line" }));
    svg.append(node("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end", class: "axis-label" }, tickLabel(value, unit)));
  }
  const xTicks = xHigh === xLow ? [xLow] : [xLow, Math.round((xLow + xHigh) / 2), xHigh];
  for (const x of new Set(xTicks)) {
    svg.append(node("text", { x: sx(x), y: HEIGHT - 8, "text-anchor": "middle", class: "axis-label" }, `${xName} ${x}`));
  }
  if (points.length > 1) {
    const path = points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(" ");
    svg.append(node("path", { d: path, class: "chart-line" }));
  }
  for (const p of points) {
    const circle = node("circle", { cx: sx(p.x), cy: sy(p.y), r: 4.5, class: "chart-point", "data-round": p.x, "data-value": p.y });
    const shown = unit ? `${(p.y * 100).toFixed(1)}%` : p.y.toPrecision(4);
    circle.append(node("title", {}, `${xName} ${p.x}: ${label} ${shown}`));
    svg.append(circle);
  }
}
