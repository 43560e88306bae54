// The dashboard (/dashboard): rounds, releases, canary decisions and devices,
// kept current from the server's event stream. In asynchronous aggregation
// rounds are versions (a `version` event refreshes them) and the async panel
// (dashboard_async.js) shows the buffer, leases and staleness.
//
// Built on the web SDK's FedgeObserver (/sdk/fedge.js): GET /v1/rounds,
// /v1/stats, /v1/releases and /v1/releases/{version}, and the event stream;
// each event marks the parts it affects (a `round` event: rounds, their
// rejections and the devices; `release` and `rollout`: releases) and those
// are fetched again once events stop arriving for a moment (debounced), one
// refresh at a time. The stream reconnects by itself, resuming from the last
// event; on every (re)connection everything is fetched again, which also
// covers what happened before the first one. Devices seen and canary reports
// have no events of their own: they are fetched again every half minute.
//
// An admin token typed in the topbar field (kept in sessionStorage for this
// tab, never in the URL) makes the stream an authenticated one, counted in
// the slots the server keeps for devices and the admin, so anonymous streams
// from the same address cannot crowd the dashboard out; without one the
// stream is a plain EventSource.
//
// window.fedgeDashboard holds what the page shows ({rounds, releases,
// events, stream, ...}), for tests and for a look from the console.

import { FedgeObserver } from "/sdk/fedge.js";
import { renderAggregation } from "./dashboard_async.js";
import { drawChart } from "./dashboard_chart.js";
import {
  chartSeries,
  renderCanaries,
  renderDevices,
  renderReleases,
  renderRounds,
} from "./dashboard_view.js";

const TOKEN_KEY = "fedge.adminToken";
const ROUND_LIMIT = 30;
const RELEASE_LIMIT = 20;
const CANARY_DETAILS = 5; // the newest releases whose canary summary is shown
const EVENTS_KEPT = 50;
const DEBOUNCE_MS = 250;
const POLL_MS = 30_000;
const EVENT_PARTS = { round: ["rounds"], version: ["rounds"], release: ["releases"], rollout: ["releases"] };

const shown = {
  rounds: [],
  releases: [],
  rollout: null,
  canaries: [],
  stats: null,
  events: [], // newest first: {id, type, data, received_at}
  live: "connecting",
  lastEventAt: null,
  refreshes: 0,
  stream: null, // "anonymous" | "admin": how the event stream is opened
};
window.fedgeDashboard = shown;

// -- fetching and drawing ---------------------------------------------------------

function rejectionsByRound(stats) {
  return new Map((stats?.rejections ?? []).map((r) => [r.round_id, r.reasons]));
}

async function refreshRounds() {
  const [rounds, stats] = await Promise.all([observer.rounds(ROUND_LIMIT), observer.stats()]);
  shown.rounds = rounds;
  shown.stats = stats;
  renderRounds(rounds, rejectionsByRound(stats));
  renderDevices(stats.devices);
  renderAggregation(stats.aggregation);
  drawRoundsChart();
}

function drawRoundsChart() {
  const series = chartSeries(shown.rounds);
  const round = shown.stats?.aggregation?.mode === "async" ? "version" : "round";
  document.getElementById("chart-caption").textContent =
    series.key === "device_loss"
      ? `Device loss over ${round}s (mean over the ${round}'s devices; no accuracy reported)`
      : `Device accuracy over ${round}s (mean over the ${round}'s devices, weighed by examples)`;
  drawChart(document.getElementById("accuracy-chart"), series.points, {
    label: series.label,
    unit: series.unit,
    empty: `No closed ${round} yet`,
    xName: round,
  });
}

async function refreshReleases() {
  const listing = await observer.releases(RELEASE_LIMIT);
  const candidates = listing.releases
    .filter((r) => ["canary", "live", "rolled_back", "retired"].includes(r.state))
    .slice(0, CANARY_DETAILS);
  const details = await Promise.all(candidates.map((r) => observer.release(r.version)));
  shown.releases = listing.releases;
  shown.rollout = listing.rollout;
  shown.canaries = details.filter((d) => d.canary).map((d) => ({ version: d.version, ...d.canary }));
  renderReleases(listing);
  renderCanaries(details);
}

const REFRESH = { rounds: refreshRounds, releases: refreshReleases };
const pending = new Set();
let timer = null;
let queue = Promise.resolve();

function showError(error) {
  const banner = document.getElementById("dash-error");
  if (error) {
    banner.textContent = `Could not refresh: ${error.message}`;
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
}

// Mark parts to fetch again; they are fetched once no event came for DEBOUNCE_MS.
function schedule(parts, delay = DEBOUNCE_MS) {
  for (const part of parts) pending.add(part);
  clearTimeout(timer);
  timer = setTimeout(() => {
    const due = [...pending];
    pending.clear();
    queue = queue.then(() => refresh(due));
  }, delay);
}

async function refresh(parts) {
  const results = await Promise.allSettled(parts.map((part) => REFRESH[part]()));
  const failed = results.find((r) => r.status === "rejected");
  showError(failed ? failed.reason : null);
  shown.refreshes += 1;
}

// -- live --------------------------------------------------------------------------

function setLive(state) {
  shown.live = state;
  const indicator = document.getElementById("live-indicator");
  indicator.dataset.state = state;
  document.getElementById("live-label").textContent = state;
}

function received(event) {
  const at = new Date();
  shown.events.unshift({ id: event.id, type: event.type, data: event.data, received_at: at.getTime() / 1000 });
  shown.events.length = Math.min(shown.events.length, EVENTS_KEPT);
  shown.lastEventAt = at.getTime() / 1000;
  const last = document.getElementById("last-event");
  last.dateTime = at.toISOString();
  last.textContent = `${at.toLocaleTimeString("en-GB")} (${event.type})`;
  schedule(EVENT_PARTS[event.type] ?? []);
}

function streamState(state, error) {
  setLive(state);
  if (state === "live") schedule(Object.keys(REFRESH), 0);
  // A refused admin token is said at once; other failures are retried quietly.
  const tokenNote = document.getElementById("admin-token-note");
  if (error?.status === 401) tokenNote.textContent = "admin token refused";
  else if (state === "live") tokenNote.textContent = shown.stream === "admin" ? "stream as admin" : "";
}

let observer = null;
let stream = null;

function connect() {
  stream?.close();
  const adminToken = sessionStorage.getItem(TOKEN_KEY) || null;
  observer = FedgeObserver.connect("", { adminToken });
  shown.stream = adminToken ? "admin" : "anonymous";
  stream = observer.events({ types: Object.keys(EVENT_PARTS), onEvent: received, onState: streamState });
}

// The admin token field: kept for this tab only; a new token opens a new stream.
document.getElementById("admin-token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = document.getElementById("admin-token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("admin-token").value = "";
  connect();
});

schedule(Object.keys(REFRESH), 0);
connect();
let resizing = null;
new ResizeObserver(() => {
  clearTimeout(resizing);
  resizing = setTimeout(drawRoundsChart, 100);
}).observe(document.getElementById("accuracy-chart"));
setInterval(() => schedule(Object.keys(REFRESH)), POLL_MS);
