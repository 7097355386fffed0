// Calls a running broker at BROKER_ADDR (host:port, plaintext), as tests/clients/test_clients.py starts
// one: on embedded defaults, with tenant "demo" and the DPoP target "demo-api".
import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  type CallOptions,
  type ClientUnaryCall,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";

import {
  AuthorizeRequestRequest,
  errorInfo,
  GetTokenRequest,
  TokenBrokerServiceClient,
  TokenType,
} from "../src/index.js";

const TENANT = "demo";
const TARGET = "demo-api";

// An unset BROKER_ADDR fails every test: a skipped client test would hide a broken set-up on CI.
const address = process.env.BROKER_ADDR ?? process.env.HELSEID_BROKER_ADDR ?? "";
const client = address ? new TokenBrokerServiceClient(address, credentials.createInsecure()) : undefined;
after(() => client?.close());

function broker(): TokenBrokerServiceClient {
  assert.ok(client, "BROKER_ADDR is not set; run tests/clients/test_clients.py, which starts a broker");
  return client;
}

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Calls a generated unary method with a deadline and returns its response as a promise. */
function call<Req, Res>(method: Unary<Req, Res>, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    method(request, new Metadata(), { deadline: Date.now() + 20_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

function assertFuture(name: string, time: Date | undefined): void {
  assert.ok(time, `${name} is not set`);
  assert.ok(time.getTime() > Date.now(), `${name} = ${time.toISOString()}, want a time in the future`);
}

test("GetToken returns a DPoP token", async () => {
  const c = broker();
  const response = await call(c.getToken.bind(c), GetTokenRequest.fromPartial({ tenant: TENANT, target: TARGET }));
  const token = response.accessToken;
  assert.ok(token?.token, "access_token.token is empty");
  assert.equal(token.tokenType, TokenType.TOKEN_TYPE_DPOP);
  assertFuture("access_token.expire_time", token.expireTime);
});

test("AuthorizeRequest returns DPoP headers", async () => {
  const c = broker();
  const request = AuthorizeRequestRequest.fromPartial({
    tenant: TENANT,
    target: TARGET,
    httpMethod: "GET",
    url: "https://api.demo.test/records",
  });
  const response = await call(c.authorizeRequest.bind(c), request);
  assert.match(response.authorization, /^DPoP \S+$/);
  assert.notEqual(response.dpop, "", "dpop is empty");
  assert.equal(response.tokenType, TokenType.TOKEN_TYPE_DPOP);
  assertFuture("expire_time", response.expireTime);
});

test("GetToken for an unknown tenant is NOT_FOUND with reason TENANT_NOT_FOUND", async () => {
  const c = broker();
  const request = GetTokenRequest.fromPartial({ tenant: "no-such-tenant", target: TARGET });
  const error = await call(c.getToken.bind(c), request).then(
    () => assert.fail("GetToken succeeded for an unknown tenant"),
    (e: ServiceError) => e,
  );
  assert.equal(error.code, status.NOT_FOUND, error.message);
  assert.equal(errorInfo(error)?.reason, "TENANT_NOT_FOUND");
});
