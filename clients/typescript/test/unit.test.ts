// Tests that need no broker: challenge parsing, loopback detection, the credential rule, error decoding,
// and the TokenSource's fallback and reconnect against a fake client.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";

import { Metadata, status } from "@grpc/grpc-js";

import {
  type AccessToken,
  authChallenge,
  BrokerError,
  connect,
  dpopChallenge,
  ErrorInfo,
  insufficientAuthorizationDetails,
  isLoopback,
  isNonceChallenge,
  RetryInfo,
  type TokenBrokerServiceClient,
  TokenSource,
  TokenType,
} from "../src/index.js";
import { Any } from "../src/gen/google/protobuf/any.js";
import { Status } from "../src/gen/google/rpc/status.js";

test("dpopChallenge finds the DPoP challenge among several, with quoted strings", () => {
  assert.deepEqual(dpopChallenge('DPoP error="use_dpop_nonce", error_description="Resource server requires nonce"'), {
    error: "use_dpop_nonce",
    error_description: "Resource server requires nonce",
  });
  assert.equal(
    dpopChallenge('Bearer realm="x", error="invalid_token", DPoP algs="ES256 PS256", error=use_dpop_nonce')?.error,
    "use_dpop_nonce",
  );
  assert.equal(dpopChallenge('Bearer error="use_dpop_nonce"'), undefined);
  assert.equal(dpopChallenge('Basic dXNlcjpwYXNz==, DPoP error="a\\"b"')?.error, 'a"b');
  assert.equal(dpopChallenge(null), undefined);
});

test("isNonceChallenge: 401 or 400, a DPoP use_dpop_nonce challenge and a DPoP-Nonce header", () => {
  const challenge = (statusCode: number, headers: Record<string, string>) =>
    isNonceChallenge(new Response(null, { status: statusCode, headers }));
  const www = { "www-authenticate": 'DPoP error="use_dpop_nonce"' };
  assert.equal(challenge(401, { ...www, "dpop-nonce": "n1" }), true);
  assert.equal(challenge(400, { ...www, "dpop-nonce": "n1" }), true);
  assert.equal(challenge(403, { ...www, "dpop-nonce": "n1" }), false);
  assert.equal(challenge(401, www), false);
  assert.equal(challenge(401, { "www-authenticate": 'DPoP error="invalid_token"', "dpop-nonce": "n1" }), false);
});

test("authChallenge picks the named scheme's challenge; insufficientAuthorizationDetails needs a 403", () => {
  const header = 'DPoP algs="ES256", Bearer realm="api", error="insufficient_authorization_details"';
  assert.deepEqual(authChallenge(header, "Bearer"), { realm: "api", error: "insufficient_authorization_details" });
  assert.deepEqual(authChallenge(header, "dpop"), { algs: "ES256" });
  assert.equal(authChallenge(header, "Basic"), undefined);
  const refusal = (statusCode: number, www?: string) =>
    insufficientAuthorizationDetails(new Response(null, { status: statusCode, headers: www ? { "www-authenticate": www } : {} }));
  const dpop = 'DPoP error="insufficient_authorization_details", error_description="needs an attest"';
  assert.deepEqual(refusal(403, dpop), { error: "insufficient_authorization_details", error_description: "needs an attest" });
  assert.equal(refusal(403, 'Bearer error="insufficient_authorization_details"')?.error, "insufficient_authorization_details");
  assert.equal(refusal(401, dpop), undefined);
  assert.equal(refusal(403, 'DPoP error="insufficient_scope"'), undefined);
  assert.equal(refusal(403, 'Basic error="insufficient_authorization_details"'), undefined);
  assert.equal(refusal(403), undefined);
});

test("isLoopback", () => {
  for (const a of ["127.0.0.1:50051", "localhost:1", "[::1]:50051", "127.1.2.3:9", "unix:/tmp/s", "ipv4:127.0.0.1:5"]) {
    assert.equal(isLoopback(a), true, a);
  }
  for (const a of ["10.0.0.1:50051", "broker.epj.svc:50051", "[2001:db8::1]:1", "localhost.evil.example:1"]) {
    assert.equal(isLoopback(a), false, a);
  }
});

test("connect refuses to send a credential over plaintext to a non-loopback address", () => {
  assert.throws(() => connect({ address: "broker.epj.svc:50051", credential: "s3cret" }), /plaintext/);
  connect({ address: "broker.epj.svc:50051", credential: "s3cret", tls: true }).close();
  connect({ address: "127.0.0.1:1", credential: "s3cret" }).close();
  connect({ address: "broker.epj.svc:50051", credential: null }).close();
});

test("BrokerError reads ErrorInfo and RetryInfo from grpc-status-details-bin", () => {
  const details = Status.encode({
    code: status.UNAVAILABLE,
    message: "the STS is unavailable",
    details: [
      Any.fromPartial({
        typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
        value: Buffer.from(ErrorInfo.encode({ reason: "STS_UNAVAILABLE", domain: "broker.helseid", metadata: { a: "b" } }).finish()),
      }),
      Any.fromPartial({
        typeUrl: "type.googleapis.com/google.rpc.RetryInfo",
        value: Buffer.from(RetryInfo.encode({ retryDelay: { seconds: 2, nanos: 500_000_000 } }).finish()),
      }),
    ],
  }).finish();
  const metadata = new Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(details));
  const error = BrokerError.from(
    Object.assign(new Error("14 UNAVAILABLE"), { code: status.UNAVAILABLE, details: "the STS is unavailable", metadata }),
  );
  assert.ok(error instanceof BrokerError);
  assert.equal(error.code, status.UNAVAILABLE);
  assert.equal(error.reason, "STS_UNAVAILABLE");
  assert.equal(error.retryDelayMs, 2500);
  assert.deepEqual(error.metadata, { a: "b" });
  assert.match(error.message, /UNAVAILABLE \(STS_UNAVAILABLE\)/);
});

/** A fake client: each WatchToken stream fails at once, until `healthy` is set; GetToken answers. */
function fakeClient(token: (n: number) => AccessToken) {
  const calls = { watch: 0, get: 0 };
  let healthy = false;
  const client = {
    watchToken() {
      calls.watch++;
      const stream = Object.assign(new EventEmitter(), { cancel() {} });
      setTimeout(() => {
        if (healthy) {
          stream.emit("data", { accessToken: token(100 + calls.watch) });
        } else {
          stream.emit("error", Object.assign(new Error("14 UNAVAILABLE"), { code: status.UNAVAILABLE }));
        }
      }, 5);
      return stream;
    },
    getToken(_request: unknown, _metadata: unknown, _options: unknown, callback: (e: null, r: unknown) => void) {
      calls.get++;
      setImmediate(() => callback(null, { accessToken: token(calls.get) }));
    },
    close() {},
  };
  return { client: client as unknown as TokenBrokerServiceClient, calls, heal: () => (healthy = true) };
}

test("TokenSource falls back to GetToken while the stream is down and reconnects with back-off", async () => {
  const expire = () => new Date(Date.now() + 60_000);
  const token = (n: number): AccessToken => ({
    token: `t${n}`,
    tokenType: TokenType.TOKEN_TYPE_DPOP,
    expireTime: expire(),
    scopes: [],
    audiences: [],
    rejectedScopes: [],
    dpopJkt: "",
  });
  const fake = fakeClient(token);
  const source = new TokenSource({ tenant: "t", target: "x", client: fake.client, minBackoffMs: 10, maxBackoffMs: 40 });
  try {
    assert.equal(await source.token(), "t1"); // the stream failed: GetToken
    assert.equal(await source.token(), "t1"); // cached: no RPC
    assert.equal(fake.calls.get, 1);
    assert.equal(source.stats.cacheHits, 1);
    await new Promise((r) => setTimeout(r, 150));
    assert.ok(fake.calls.watch >= 3, `reconnected ${fake.calls.watch - 1} times, want >= 2`);
    fake.heal();
    const deadline = Date.now() + 2_000;
    while (source.stats.streamTokens === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(source.stats.streamTokens, 1);
    assert.match(await source.token(), /^t1\d\d$/); // the stream's token, later than GetToken's
    assert.equal(fake.calls.get, 1);
  } finally {
    source.close();
  }
  await assert.rejects(source.token(), /closed/);
});
