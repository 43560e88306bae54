// The live model's health on the dashboard: the judged windows of the live
// release, per runtime, and whether an alert is raised.
//
// Self-contained (its own section, added after the page's last one) so the
// rest of the dashboard need not know it; its reads go through the web SDK's
// FedgeObserver: GET /v1/releases?limit=1 names the
// live release, GET /v1/releases/{version}/health gives its series (public:
// medians over devices, never a device's own numbers). Fetched again every
// POLL_MS; alerts also arrive as `health` events, which the page's stream
// does not subscribe to, so a poll is what keeps this current.
//
// window.fedgeHealth holds what the panel shows ({version, series, alerts}).

import { FedgeObserver } from "/sdk/fedge.js";

const POLL_MS = 15_000;
const WINDOWS_SHOWN = 12;
const observer = FedgeObserver.connect(""); // public reads: no token needed
const shown = { version: null, series: null, alerts: [], error: null };
window.fedgeHealth = shown;

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function section() {
  const card = element("section", { id: "health", class: "card dash-card", "aria-labelledby": "health-title" });
  card.append(element("h2", { id: "health-title" }, "Live model health"));
  card.append(element("p", { id: "health-status", class: "rollout", role: "status" }, "No reports yet."));
  const wrap = element("div", { class: "table-wrap", tabindex: "0", "aria-label": "Health windows (scrolls sideways)" });
  const table = element("table", { id: "health-table", class: "dash-table" });
  const head = element("tr");
  for (const title of ["Window start", "Runtime", "Devices", "Metric", "Drop", "Distance", "Drifted votes", "Alert"]) {
    head.append(element("th", { scope: "col" }, title));
  }
  table.append(element("thead"), element("tbody", { id: "health-body" }));
  table.tHead.append(head);
  wrap.append(table);
  card.append(wrap);
  document.querySelector("main").append(card);
}

function number(value, digits = 3) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function render(series) {
  const body = document.getElementById("health-body");
  body.replaceChildren();
  const windows = series.windows.slice(-WINDOWS_SHOWN).reverse();
  for (const w of windows) {
    const row = element("tr", { "data-alert": String(w.alert) });
    const cells = [
      new Date(w.start * 1000).toLocaleString("en-GB"),
      w.runtime,
      String(w.devices),
      `${w.metric} ${number(w.value)}${w.baseline ? " (baseline)" : ""}`,
      number(w.drop),
      number(w.distance),
      `${w.votes} / ${w.devices}`,
      w.alert ? "ALERT" : "ok",
    ];
    for (const text of cells) row.append(element("td", {}, text));
    body.append(row);
  }
  const latest = new Map();
  for (const w of series.windows) latest.set(w.runtime, w);
  shown.alerts = [...latest.values()].filter((w) => w.alert);
  const status = document.getElementById("health-status");
  if (series.windows.length === 0) {
    status.textContent = `Release ${series.version}: no judged window yet (${series.open_reports} reports in the open one; windows of ${series.window_s} s).`;
  } else if (shown.alerts.length > 0) {
    status.textContent = `Release ${series.version}: drift alert on ${shown.alerts.map((w) => w.runtime).join(", ")}.`;
  } else {
    status.textContent = `Release ${series.version}: no drift (alert when more than half of at least ${series.min_devices} devices drift).`;
  }
  status.dataset.alert = String(shown.alerts.length > 0);
}

async function refresh() {
  try {
    const listing = await observer.releases(1);
    const version = listing.rollout?.live;
    shown.version = version ?? null;
    if (version === null || version === undefined) return;
    shown.series = await observer.health(version);
    render(shown.series);
    shown.error = null;
  } catch (error) {
    shown.error = error.message;
  }
}

section();
refresh();
setInterval(refresh, POLL_MS);
