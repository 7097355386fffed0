// The environment tests/clients/conftest.py's `demo_broker` fixture gives: a broker with the embedded
// defaults and the dev authority's demo API. An unset variable fails the test, never skips it.
import assert from "node:assert/strict";

export function env(name: string): string {
  const value = process.env[name];
  assert.ok(
    value,
    `${name} is not set: run tests/clients/test_typescript_client.py, which starts a broker and the demo API, ` +
      "or export HELSEID_BROKER_ADDR, DEMO_API_URL, DEMO_BEARER_URL, DEMO_STATS_URL, DEMO_ROTATE_URL, " +
      "DEMO_TENANT, DEMO_TARGET and DEMO_BEARER_TARGET",
  );
  return value;
}

export interface DemoStats {
  requests: number;
  nonce_challenges: number;
  accepted: number;
  rejected: number;
}

export async function demoStats(): Promise<DemoStats> {
  const response = await fetch(env("DEMO_STATS_URL"));
  assert.equal(response.status, 200);
  return ((await response.json()) as { demo_api: DemoStats }).demo_api;
}

export async function rotateNonce(): Promise<void> {
  const response = await fetch(env("DEMO_ROTATE_URL"), { method: "POST" });
  assert.ok(response.ok, `rotate-nonce answered ${response.status}`);
  await response.body?.cancel();
}

/** A fetch that counts the round trips it sends (the test transport). */
export function countingFetch(): { fetch: typeof fetch; trips: Array<{ method: string; status: number }> } {
  const trips: Array<{ method: string; status: number }> = [];
  const f = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const response = await fetch(input, init);
    trips.push({ method: init?.method ?? "GET", status: response.status });
    return response;
  };
  return { fetch: f, trips };
}
