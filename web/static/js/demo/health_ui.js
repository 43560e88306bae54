// The demo page's health reports on the model it serves (issue 23).
//
// After the user labels examples (a pause of HEALTH_SETTLE_MS, so a burst
// of labels goes in one report), and no earlier than the server's
// next_report_at, the page reports how the model it serves does on the
// examples labelled since its last report (shared/health.js, through the
// SDK's client.reportHealth()): numbers only. federated_ui.js mounts it and
// shows the outcome in its log and in window.fedgeFederated (lastHealth,
// healthReports).

const HEALTH_SETTLE_MS = 2000;

const shown = (metric, x) => (metric === "accuracy" ? `${(x * 100).toFixed(1)}%` : x.toFixed(4));

/** `run`: the page's one-job-at-a-time queue; `log(text, kind)`; `state`: window.fedgeFederated. */
export function healthReports({ client, run, log, state }) {
  let timer = null;
  const reportHealth = () =>
    run(async () => {
      timer = null;
      try {
        const outcome = await client.reportHealth();
        state.lastHealth = outcome;
        if (outcome.status === "reported") {
          state.healthReports += 1;
          const b = outcome.body;
          log(`health: reported ${b.metric} ${shown(b.metric, b.value)} on ${b.num_examples} new example(s) to release ${outcome.version} (${b.runtime})`, "ok");
        }
        if (outcome.status === "waiting") scheduleHealth();
        return outcome;
      } catch (error) {
        // A refusal (another report in this window, a release not served) is
        // the server's answer, not the page's failure: noted, not an error.
        state.lastHealth = { status: "refused", code: error.code || null, message: error.message || String(error) };
        log(`health report not taken: ${state.lastHealth.message}`);
        return state.lastHealth;
      }
    });
  const scheduleHealth = () => {
    if (timer !== null) clearTimeout(timer);
    const next = state.lastHealth?.nextReportAt || 0;
    timer = setTimeout(() => void reportHealth(), Math.max(HEALTH_SETTLE_MS, next - Date.now() + 50));
  };
  return { reportHealth, scheduleHealth };
}
