// Rendering the dashboard's sections from the API's records. Every value is
// set with textContent (never as HTML): notes, platforms and error codes come
// from devices and admins.

function el(tag, { className, text, title } = {}, children = []) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  if (title) element.title = title;
  element.append(...children);
  return element;
}

function cell(content, className) {
  const td = el("td", { className });
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  return td;
}

function stateBadge(state) {
  return el("span", { className: `state state-${state}`, text: state.replace("_", " ") });
}

const DASH = "–";

export function formatNumber(value, digits = 3) {
  if (typeof value !== "number" || !Number.isFinite(value)) return DASH;
  return Number.isInteger(value) ? value.toLocaleString("en") : value.toPrecision(digits);
}

export function formatPercent(fraction) {
  if (typeof fraction !== "number" || !Number.isFinite(fraction)) return DASH;
  return `${(fraction * 100).toFixed(1)}%`;
}

export function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return DASH;
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 120 ? `${minutes} min ${Math.round(seconds % 60)} s` : `${(minutes / 60).toFixed(1)} h`;
}

export function formatTime(epochSeconds) {
  if (typeof epochSeconds !== "number") return DASH;
  return new Date(epochSeconds * 1000).toLocaleString("en-GB", {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

// -- devices -------------------------------------------------------------------

export function renderDevices(devices) {
  document.getElementById("devices-enrolled").textContent = formatNumber(devices.enrolled);
  document.getElementById("devices-seen-1h").textContent = formatNumber(devices.seen_1h);
  document.getElementById("devices-seen-24h").textContent = formatNumber(devices.seen_24h);
  const list = document.getElementById("devices-platforms");
  const entries = Object.entries(devices.by_platform);
  list.replaceChildren(
    ...(entries.length
      ? entries.map(([platform, count]) => {
        const item = el("li", { text: `${platform} ` }, [el("strong", { text: formatNumber(count) })]);
        item.dataset.platform = platform;
        return item;
      })
      : [el("li", { className: "muted", text: "no devices yet" })]),
  );
}

// -- rounds --------------------------------------------------------------------

function rejectedCell(reasons) {
  const entries = Object.entries(reasons || {});
  if (!entries.length) return cell("0");
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  const wrap = el("span", { title: entries.map(([code, n]) => `${code}: ${n}`).join("\n") }, [
    el("span", { className: "reason-count", text: `${total} ` }),
    ...entries.map(([code, n]) => el("span", { className: "reason muted", text: `${code} ×${n}` })),
  ]);
  return cell(wrap);
}

function roundDuration(round) {
  const end = round.closed_at ?? (["open", "closing"].includes(round.state) ? Date.now() / 1000 : null);
  return end === null ? null : end - round.opened_at;
}

/** A secure round's survivors per stage (its secure_* metrics). */
export function secureSummary(metrics) {
  const count = (key) => metrics[`secure_${key}`] ?? 0;
  return `secure aggregation: ${count("advertised")} advertised keys, ${count("shared")} shared, ${count("uploaded")} uploaded, ${count("unmask_answers")} answered unmasking`;
}

export function renderRounds(rounds, rejectionsByRound) {
  const body = document.getElementById("rounds-body");
  body.replaceChildren(
    ...rounds.map((round) => {
      const metrics = round.metrics || {};
      const row = el("tr", {}, [
        cell(String(round.round_id)),
        cell(stateBadge(round.state)),
        cell(`${round.updates} / ${round.selected}`, "participants round-only"),
        cell(formatNumber(metrics.updates ?? round.updates), "accepted"),
        rejectedCell(rejectionsByRound.get(round.round_id)),
        cell(formatNumber(metrics.examples)),
        cell(formatPercent(metrics.device_accuracy), "device-accuracy"),
        cell(formatNumber(metrics.device_loss), "device-loss"),
        cell(metrics.secure_aggregation ? `${metrics.strategy ?? DASH} · secure` : (metrics.strategy ?? DASH), "strategy"),
        cell(formatDuration(roundDuration(round)), "duration round-only"),
      ]);
      row.id = `round-row-${round.round_id}`;
      row.dataset.state = round.state;
      const titles = [metrics.secure_aggregation ? secureSummary(metrics) : null, metrics.reason].filter(Boolean);
      if (titles.length) row.title = titles.join("; ");
      return row;
    }),
  );
  document.getElementById("rounds-empty").hidden = rounds.length > 0;
}

// The chart's metric: device accuracy when any closed round has it, else loss.
export function chartSeries(rounds) {
  const closed = rounds.filter((r) => r.state === "closed").sort((a, b) => a.round_id - b.round_id);
  for (const [key, label, unit] of [["device_accuracy", "device accuracy", true], ["device_loss", "device loss", false]]) {
    const points = closed
      .filter((r) => typeof r.metrics?.[key] === "number")
      .map((r) => ({ x: r.round_id, y: r.metrics[key] }));
    if (points.length) return { key, label, unit, points };
  }
  return { key: null, label: "device accuracy", unit: true, points: [] };
}

// -- releases ------------------------------------------------------------------

function rolloutShare(release, rollout) {
  if (release.state === "canary") return `${formatNumber(release.percent)}% (canary)`;
  if (release.state === "live") {
    const share = rollout.candidate === null ? 100 : 100 - rollout.percent;
    return `${formatNumber(share)}%`;
  }
  return DASH;
}

export function renderReleases(listing) {
  const { releases, rollout } = listing;
  const summary = document.getElementById("rollout");
  if (rollout.live === null && rollout.candidate === null) {
    summary.textContent = "No release yet.";
  } else {
    const parts = [el("strong", { text: rollout.live === null ? "no live release" : `v${rollout.live} live` })];
    if (rollout.candidate !== null) {
      parts.push(document.createTextNode(" · candidate "), el("strong", { text: `v${rollout.candidate}` }),
        document.createTextNode(` on ${formatNumber(rollout.percent)}% of devices`));
    } else {
      parts.push(document.createTextNode(" on every device"));
    }
    summary.replaceChildren(...parts);
  }
  summary.dataset.live = String(rollout.live);
  summary.dataset.candidate = String(rollout.candidate);
  document.getElementById("releases-body").replaceChildren(
    ...releases.map((release) => {
      const row = el("tr", {}, [
        cell(`v${release.version}`),
        cell(stateBadge(release.state)),
        cell(release.source),
        cell(rolloutShare(release, rollout), "rollout-share"),
        cell(release.created_by),
        cell(formatTime(release.created_at)),
        cell(release.error || release.notes || DASH, "notes"),
      ]);
      row.id = `release-row-${release.version}`;
      row.dataset.state = release.state;
      return row;
    }),
  );
}

function scores(values, metric) {
  if (!values) return DASH;
  const shown = metric === "accuracy" ? formatPercent(values[metric]) : formatNumber(values[metric], 4);
  return `${metric} ${shown} · loss ${formatNumber(values.loss, 4)}`;
}

// The sequential test's evidence: the mean paired difference (candidate
// minus live) and its interval; the reason ("not enough evidence yet", the
// test that decided, or a limit) as the cell's text below it.
function evidenceCell(canary) {
  const signed = (value) => `${value >= 0 ? "+" : ""}${formatNumber(value, 3)}`;
  const difference =
    canary.estimate == null
      ? DASH
      : `${signed(canary.estimate)}${canary.interval ? ` [${signed(canary.interval[0])}, ${signed(canary.interval[1])}]` : ""}`;
  const shown = cell(difference);
  if (canary.reason) shown.append(el("div", { className: "muted small", text: canary.reason }));
  return shown;
}

// Parity on the devices' own runtimes (issue 23): one line per runtime,
// "tflite ok" or "tfjs-webgl failed", with its devices and median error and
// agreement; a failed runtime is kept off the release.
function parityCell(parity) {
  const runtimes = Object.entries(parity || {});
  if (runtimes.length === 0) return cell(DASH, "parity");
  const shown = cell("", "parity");
  for (const [runtime, found] of runtimes) {
    const line = el("div", {
      className: found.ok ? "parity-ok" : "parity-failed",
      text: `${runtime} ${found.ok ? "ok" : "failed"}: ${found.failing}/${found.devices} failing, ` +
        `max error ${formatNumber(found.max_error, 4)}, top-1 ${formatPercent(found.agreement)}`,
    });
    line.dataset.runtime = runtime;
    line.dataset.ok = String(found.ok);
    shown.append(line);
  }
  return shown;
}

export function renderCanaries(details) {
  const withReports = details.filter((d) => d.canary);
  document.getElementById("canary-body").replaceChildren(
    ...withReports.map(({ version, canary, parity }) => {
      const decision = canary.decision ?? "pending";
      const row = el("tr", {}, [
        cell(`v${version}`),
        cell(`${canary.reports} / ${canary.min_reports}`),
        cell(formatNumber(canary.num_examples)),
        cell(`${canary.metric ?? DASH}${canary.higher_is_better === false ? " (lower is better)" : ""}`),
        cell(scores(canary.candidate, canary.metric)),
        cell(scores(canary.baseline, canary.metric)),
        cell(String(canary.devices ?? DASH)),
        evidenceCell(canary),
        parityCell(parity),
        cell(stateBadge(decision)),
      ]);
      row.id = `canary-row-${version}`;
      row.dataset.decision = decision;
      row.dataset.outcome = canary.outcome ?? decision;
      return row;
    }),
  );
  document.getElementById("canary-empty").hidden = withReports.length > 0;
  document.getElementById("canary-table").closest(".table-wrap").hidden = withReports.length === 0;
}
