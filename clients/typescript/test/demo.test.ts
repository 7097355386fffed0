// Tests against a running broker and the demo API (tests/clients/conftest.py's `demo_broker`): the fetch
// wrapper's nonce retry, nonce memory, a bearer target, errors with their reasons, and a TokenSource that
// sees a renewal without an RPC per read.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  type BrokerFetch,
  AuthorizeRequestRequest,
  BrokerError,
  brokerFetch,
  CareContext,
  closeBrokerFetch,
  Code,
  connect,
  createFetch,
  INSUFFICIENT_AUTHORIZATION_DETAILS,
  type TokenBrokerServiceClient,
  TokenSource,
} from "../src/index.js";
import { countingFetch, demoStats, env, rotateNonce } from "./env.js";

interface DemoAnswer {
  method: string;
  path: string;
  client_id: string;
  token_type: string;
  body_bytes: number;
}

let client: TokenBrokerServiceClient;
before(() => {
  env("HELSEID_BROKER_ADDR");
  client = connect(); // address from HELSEID_BROKER_ADDR
});
after(() => {
  client?.close();
  closeBrokerFetch();
});

function dpopFetch(transport: typeof fetch): BrokerFetch {
  return createFetch({ client, tenant: env("DEMO_TENANT"), target: env("DEMO_TARGET"), fetch: transport });
}

async function ok(response: Response): Promise<DemoAnswer> {
  const text = await response.text();
  assert.equal(response.status, 200, `${response.status} ${response.headers.get("www-authenticate")} ${text}`);
  return JSON.parse(text) as DemoAnswer;
}

test("a GET succeeds after exactly one nonce retry; the next request needs none", async () => {
  const t = countingFetch();
  const f = dpopFetch(t.fetch);
  const before = await demoStats();
  const answer = await ok(await f(new URL("records/1?x=1", env("DEMO_API_URL"))));
  assert.equal(answer.method, "GET");
  assert.equal(answer.token_type, "DPoP");
  assert.deepEqual(t.trips.map((x) => x.status), [401, 200]);
  const after = await demoStats();
  assert.equal(after.nonce_challenges - before.nonce_challenges, 1);
  assert.equal(after.accepted - before.accepted, 1);

  await ok(await f(new URL("records/2", env("DEMO_API_URL"))));
  assert.deepEqual(t.trips.map((x) => x.status), [401, 200, 200], "the remembered nonce was not used");
  assert.ok(f.nonces.get(new URL(env("DEMO_API_URL")).origin));
});

test("a POST with a body succeeds after exactly one nonce retry (the body is sent twice)", async () => {
  const t = countingFetch();
  const f = dpopFetch(t.fetch);
  const body = JSON.stringify({ note: "x".repeat(1000) });
  const answer = await ok(
    await f(new URL("records", env("DEMO_API_URL")), {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
    }),
  );
  assert.equal(answer.method, "POST");
  assert.equal(answer.body_bytes, Buffer.byteLength(body));
  assert.deepEqual(t.trips, [
    { method: "POST", status: 401 },
    { method: "POST", status: 200 },
  ]);
});

test("a Request object with a streamed body is buffered and replayed", async () => {
  const t = countingFetch();
  const f = dpopFetch(t.fetch);
  const chunks = [new TextEncoder().encode("abc"), new TextEncoder().encode("defg")];
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = chunks.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
  const request = new Request(new URL("upload", env("DEMO_API_URL")), { method: "PUT", body: stream, duplex: "half" } as RequestInit);
  const answer = await ok(await f(request));
  assert.equal(answer.method, "PUT");
  assert.equal(answer.body_bytes, 7);
  assert.equal(t.trips.length, 2);
});

test("after the API rotates its nonce the wrapper retries exactly once with the new one", async () => {
  const t = countingFetch();
  const f = dpopFetch(t.fetch);
  await ok(await f(env("DEMO_API_URL")));
  await rotateNonce();
  const before = await demoStats();
  await ok(await f(env("DEMO_API_URL"), { method: "DELETE" }));
  assert.deepEqual(t.trips.map((x) => x.status), [401, 200, 401, 200]);
  const after = await demoStats();
  assert.equal(after.nonce_challenges - before.nonce_challenges, 1);
  assert.equal(after.requests - before.requests, 2);
});

test("a 401 that is not a nonce challenge is returned as is, without a retry; a 400 challenge is retried", async () => {
  const answers: ResponseInit[] = [
    { status: 401, headers: { "www-authenticate": 'DPoP error="invalid_token"', "dpop-nonce": "n1" } },
    { status: 400, headers: { "www-authenticate": 'DPoP error="use_dpop_nonce"', "dpop-nonce": "n2" } },
    { status: 204, headers: { "dpop-nonce": "n3" } },
  ];
  const proofs: string[] = [];
  const transport = async (_input: string | URL | Request, init?: RequestInit) => {
    proofs.push(new Headers(init?.headers).get("dpop") ?? "");
    const next = answers.shift();
    assert.ok(next, "one request too many");
    return new Response(null, next);
  };
  const f = dpopFetch(transport);
  const url = new URL("records", env("DEMO_API_URL"));
  assert.equal((await f(url)).status, 401);
  assert.equal(f.nonces.get(url.origin), "n1");
  assert.equal((await f(url, { method: "POST", body: "abc" })).status, 204);
  assert.equal(f.nonces.get(url.origin), "n3");
  const nonces = proofs.map((p) => JSON.parse(Buffer.from(p.split(".")[1], "base64url").toString()).nonce);
  assert.deepEqual(nonces, [undefined, "n1", "n2"]);
});

test("a bearer target: Authorization: Bearer, no DPoP, one round trip", async () => {
  const seen: Headers[] = [];
  const transport = async (input: string | URL | Request, init?: RequestInit) => {
    seen.push(new Headers(init?.headers));
    return fetch(input, init);
  };
  const f = createFetch({ client, tenant: env("DEMO_TENANT"), target: env("DEMO_BEARER_TARGET"), fetch: transport });
  const answer = await ok(await f(new URL("patients", env("DEMO_BEARER_URL")), { headers: { "x-trace": "1" } }));
  assert.equal(answer.token_type, "Bearer");
  assert.equal(seen.length, 1);
  assert.match(seen[0].get("authorization") ?? "", /^Bearer \S+$/);
  assert.equal(seen[0].get("dpop"), null);
  assert.equal(seen[0].get("x-trace"), "1");
});

test("brokerFetch: the one-off form with tenant and target per call", async () => {
  const answer = await ok(
    await brokerFetch(new URL("one-off", env("DEMO_API_URL")), { tenant: env("DEMO_TENANT"), target: env("DEMO_TARGET") }),
  );
  assert.equal(answer.token_type, "DPoP");
});

test("an unknown tenant is a BrokerError with reason TENANT_NOT_FOUND", async () => {
  const f = createFetch({ client, tenant: "nope", target: env("DEMO_TARGET") });
  const error = await f(env("DEMO_API_URL")).then(
    () => assert.fail("the request was sent for an unknown tenant"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof BrokerError, String(error));
  assert.equal(error.code, Code.NOT_FOUND);
  assert.equal(error.reason, "TENANT_NOT_FOUND");
});

test("a URL outside the target's allowed URLs is URL_NOT_ALLOWED and nothing is sent", async () => {
  const t = countingFetch();
  const f = dpopFetch(t.fetch);
  await assert.rejects(f("https://elsewhere.example/demo-api/x"), (e: unknown) => {
    assert.ok(e instanceof BrokerError);
    assert.equal(e.code, Code.PERMISSION_DENIED);
    assert.equal(e.reason, "URL_NOT_ALLOWED");
    return true;
  });
  assert.equal(t.trips.length, 0);
});

test("the demo API's attest path refuses a tenant token (no attest): a BrokerError INSUFFICIENT_AUTHORIZATION_DETAILS", async () => {
  const t = countingFetch();
  const f = dpopFetch(t.fetch);
  const before = await demoStats();
  await assert.rejects(f(new URL("attest/records", env("DEMO_API_URL"))), (e: unknown) => {
    assert.ok(e instanceof BrokerError, String(e));
    assert.equal(e.reason, INSUFFICIENT_AUTHORIZATION_DETAILS);
    assert.equal(e.reason, "INSUFFICIENT_AUTHORIZATION_DETAILS");
    assert.equal(e.code, Code.PERMISSION_DENIED);
    assert.match(e.message, /care context/);
    assert.match(e.message, /attest/);
    assert.match(e.message, /GetSessionToken or AuthorizeSessionRequest with care_context/);
    assert.equal(e.metadata.status, "403");
    return true;
  });
  assert.deepEqual(t.trips.map((x) => x.status), [401, 403], "the nonce retry, then the refusal");
  const after = await demoStats();
  assert.equal(after.rejected - before.rejected, 1);
  // The same wrapper still reaches the paths that need no attest.
  await ok(await f(new URL("records/3", env("DEMO_API_URL"))));
});

test("other 403s stay HTTP answers; a Bearer insufficient_authorization_details challenge is the typed error too", async () => {
  const answers: ResponseInit[] = [
    { status: 403, headers: { "www-authenticate": 'DPoP error="insufficient_scope"' } },
    { status: 403 },
    { status: 401, headers: { "www-authenticate": 'DPoP error="insufficient_authorization_details"' } },
    { status: 403, headers: { "www-authenticate": 'Bearer realm="x", error="insufficient_authorization_details"' } },
  ];
  const transport = async () => {
    const next = answers.shift();
    assert.ok(next, "one request too many");
    return new Response("refused", next);
  };
  const f = dpopFetch(transport);
  const url = new URL("records", env("DEMO_API_URL"));
  assert.equal((await f(url)).status, 403);
  assert.equal((await f(url)).status, 403);
  assert.equal((await f(url)).status, 401);
  await assert.rejects(f(url), (e: unknown) => e instanceof BrokerError && e.reason === "INSUFFICIENT_AUTHORIZATION_DETAILS");
  assert.equal(answers.length, 0);
});

test("a care context per request goes into AuthorizeRequest, else the wrapper's default", async () => {
  const sent: AuthorizeRequestRequest[] = [];
  const spy = Object.create(client) as TokenBrokerServiceClient;
  spy.authorizeRequest = ((request: AuthorizeRequestRequest, ...rest: unknown[]) => {
    sent.push(request);
    return (client.authorizeRequest as (...a: unknown[]) => unknown).call(client, request, ...rest);
  }) as TokenBrokerServiceClient["authorizeRequest"];
  const byDefault = CareContext.fromPartial({ sourceSystem: "epj-test", eventId: "e-default" });
  const f = createFetch({ client: spy, tenant: env("DEMO_TENANT"), target: env("DEMO_TARGET"), careContext: byDefault });
  const perRequest = CareContext.fromPartial({ patientId: "13116900216", eventId: "e-1", accessBasis: "UNNTAK" });
  await ok(await f(env("DEMO_API_URL"), { careContext: perRequest }));
  await ok(await f(env("DEMO_API_URL")));
  assert.deepEqual(
    sent.map((r) => r.careContext?.eventId),
    ["e-1", "e-1", "e-default"], // the nonce retry sends the same context
  );
  assert.equal(sent[0].careContext?.patientId, "13116900216");
  assert.equal(sent[0].dpopNonce, "");
  assert.notEqual(sent[1].dpopNonce, "");
  assert.equal(sent[2].dpopNonce, sent[1].dpopNonce);
});

test("the session variant calls AuthorizeSessionRequest (an unknown session is SESSION_NOT_FOUND)", async () => {
  const t = countingFetch();
  const f = createFetch({ client, sessionId: "no-such-session", target: env("DEMO_TARGET"), fetch: t.fetch });
  await assert.rejects(f(env("DEMO_API_URL")), (e: unknown) => {
    assert.ok(e instanceof BrokerError, String(e));
    assert.equal(e.reason, "SESSION_NOT_FOUND");
    return true;
  });
  assert.equal(t.trips.length, 0);
});

test("TokenSource: a cached token costs no RPC, and a renewal arrives through WatchToken", async () => {
  const source = new TokenSource({ client, tenant: env("DEMO_TENANT"), target: env("DEMO_TARGET") });
  try {
    const first = await source.token();
    assert.ok(first);
    const rpcs = () => source.stats.getTokenCalls + source.stats.streamsOpened;
    const rpcsAfterFirst = rpcs();
    for (let i = 0; i < 1000; i++) {
      assert.equal(await source.token(), first);
    }
    assert.equal(rpcs(), rpcsAfterFirst, "a cached read made an RPC");
    const deadline = Date.now() + 25_000;
    let reads = 0;
    let current = first;
    while (current === first && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      current = await source.token();
      reads++;
    }
    assert.notEqual(current, first, "no renewal within 25 s");
    assert.equal(rpcs(), rpcsAfterFirst, `${reads} reads made RPCs: ${JSON.stringify(source.stats)}`);
    assert.ok(source.stats.streamTokens >= 2, JSON.stringify(source.stats));
    assert.equal(source.stats.getTokenCalls, 0, JSON.stringify(source.stats));
  } finally {
    source.close();
  }
});

test("TokenSource for an unknown tenant rejects with TENANT_NOT_FOUND", async () => {
  const source = new TokenSource({ client, tenant: "nope", target: env("DEMO_TARGET"), minBackoffMs: 1000 });
  try {
    await assert.rejects(source.token(), (e: unknown) => e instanceof BrokerError && e.reason === "TENANT_NOT_FOUND");
  } finally {
    source.close();
  }
});
