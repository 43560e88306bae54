// The public, read-only calls the dashboard makes (same origin, no token).
//
// GET /v1/rounds, /v1/stats, /v1/releases and /v1/releases/{version}; see
// server/openapi.yaml. A failed call throws an Error naming the server's
// stable error code.

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) {
    let code = `HTTP ${response.status}`;
    try {
      code = (await response.json()).code || code;
    } catch {
      // not JSON: keep the status
    }
    throw new Error(`${path}: ${code}`);
  }
  return response.json();
}

export async function loadRounds(limit) {
  return (await getJSON(`/v1/rounds?limit=${limit}`)).rounds;
}

export function loadStats() {
  return getJSON("/v1/stats");
}

export function loadReleases(limit) {
  return getJSON(`/v1/releases?limit=${limit}`);
}

export function loadRelease(version) {
  return getJSON(`/v1/releases/${encodeURIComponent(version)}`);
}
