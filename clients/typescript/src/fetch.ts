/**
 * A `fetch`-compatible wrapper: every request gets its `Authorization`, `DPoP` and API headers from the
 * broker's `AuthorizeRequest` (or `AuthorizeSessionRequest`), with the last `DPoP-Nonce` the origin sent.
 * A `use_dpop_nonce` challenge (401 or 400 with `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a
 * `DPoP-Nonce` header) is retried exactly once with the new nonce; the body is buffered so it can be sent
 * twice. A 403 whose challenge (`DPoP` or `Bearer`) says `error="insufficient_authorization_details"`
 * rejects with a `BrokerError` of reason `INSUFFICIENT_AUTHORIZATION_DETAILS`.
 */
import {
  AuthorizeRequestRequest,
  AuthorizeSessionRequestRequest,
  type CareContext,
  type HttpHeader,
  type TokenBrokerServiceClient,
} from "./gen/broker/v1/token_broker_service.js";
import { connect, type ConnectOptions, DEFAULT_DEADLINE_MS, unary } from "./connection.js";
import { BrokerError, Code, INSUFFICIENT_AUTHORIZATION_DETAILS } from "./errors.js";

/** `RequestInit` plus the per-request care context. */
export interface BrokerRequestInit extends RequestInit {
  /** The care context of this request (patient, practitioner, ...): overrides the wrapper's default. */
  careContext?: CareContext;
}

/** A function with the global `fetch`'s signature that authorizes each request through the broker. */
export interface BrokerFetch {
  (input: string | URL | Request, init?: BrokerRequestInit): Promise<Response>;
  /** The nonce memory, by origin. */
  readonly nonces: NonceStore;
  /** Closes the broker connection if the wrapper opened it. */
  close(): void;
}

/** Remembers the last `DPoP-Nonce` per origin (`https://host:port`). */
export interface NonceStore {
  get(origin: string): string | undefined;
  set(origin: string, nonce: string): void;
}

export interface FetchOptions extends ConnectOptions {
  /** The tenant and target of `AuthorizeRequest`. */
  tenant?: string;
  target: string;
  /** Use a user's session (`AuthorizeSessionRequest`) instead of a tenant's token. */
  sessionId?: string;
  /** A care context for every request that does not give its own. */
  careContext?: CareContext;
  /** A client to share; default: `connect(options)`, closed by `close()`. */
  client?: TokenBrokerServiceClient;
  /** The fetch that sends the requests (default: the global `fetch`). */
  fetch?: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  /** Nonce memory to share between wrappers (default: a new `Map` per wrapper). */
  nonces?: NonceStore;
  /** Deadline of an AuthorizeRequest call (default 10 s). */
  deadlineMs?: number;
}

interface Authorization {
  authorization: string;
  dpop: string;
  headers: HttpHeader[];
}

/**
 * Parses `WWW-Authenticate` and returns the parameters of its first challenge of `scheme` (compared without
 * case; names in lower case), or `undefined` when there is none. Handles several challenges in one header
 * and quoted strings.
 */
export function authChallenge(header: string | null, scheme: string): Record<string, string> | undefined {
  const wanted = scheme.toLowerCase();
  if (!header) {
    return undefined;
  }
  const re = /\s*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)|([!#$%&'*+.^_`|~0-9A-Za-z-]+=*)|,)/gy;
  let current: string | undefined;
  let params: Record<string, string> = {};
  let found: Record<string, string> | undefined;
  let m: RegExpExecArray | null;
  let pos = 0;
  const flush = () => {
    if (current?.toLowerCase() === wanted && found === undefined) {
      found = params;
    }
  };
  while (pos < header.length && (m = re.exec(header)) !== null) {
    pos = re.lastIndex;
    if (m[1] !== undefined) {
      const raw = m[2] ?? "";
      params[m[1].toLowerCase()] = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
    } else if (m[3] !== undefined) {
      if (m[3].includes("=")) {
        continue; // a token68 (Basic/Bearer credentials form); not a new challenge
      }
      flush();
      current = m[3];
      params = {};
    }
  }
  flush();
  return found;
}

/**
 * Parses `WWW-Authenticate` and returns the parameters of its `DPoP` challenge (names in lower case), or
 * `undefined` when there is none. Handles several challenges in one header and quoted strings.
 */
export function dpopChallenge(header: string | null): Record<string, string> | undefined {
  return authChallenge(header, "dpop");
}

/** Whether a response is a DPoP nonce challenge (RFC 9449 section 9 and 8). */
export function isNonceChallenge(response: Response): boolean {
  if (response.status !== 401 && response.status !== 400) {
    return false;
  }
  if (!response.headers.get("dpop-nonce")) {
    return false;
  }
  return dpopChallenge(response.headers.get("www-authenticate"))?.error === "use_dpop_nonce";
}

/**
 * The `DPoP` or `Bearer` challenge's parameters when a response is a 403 with
 * `error="insufficient_authorization_details"` (the API needs the trust framework's attest in the token),
 * else `undefined`.
 */
export function insufficientAuthorizationDetails(response: Response): Record<string, string> | undefined {
  if (response.status !== 403) {
    return undefined;
  }
  const header = response.headers.get("www-authenticate");
  for (const scheme of ["dpop", "bearer"]) {
    const challenge = authChallenge(header, scheme);
    if (challenge?.error === "insufficient_authorization_details") {
      return challenge;
    }
  }
  return undefined;
}

/** The `BrokerError` for a 403 `insufficient_authorization_details` answer (see `createFetch`). */
function insufficientAuthorizationDetailsError(
  method: string,
  url: string,
  status: number,
  challenge: Record<string, string>,
): BrokerError {
  const origin = new URL(url).origin;
  const description = challenge.error_description;
  const details =
    `${method} ${origin} answered ${status} insufficient_authorization_details: the request needs a care ` +
    "context with the trust framework's attest in the token, i.e. a session token made with a care context " +
    "(GetSessionToken or AuthorizeSessionRequest with care_context: createFetch({ sessionId, careContext }) " +
    "or careContext per request)" +
    (description ? ` (the API said: ${description})` : "");
  const metadata: Record<string, string> = { status: String(status), origin };
  if (description) {
    metadata.error_description = description;
  }
  return new BrokerError(Code.PERMISSION_DENIED, details, INSUFFICIENT_AUTHORIZATION_DETAILS, undefined, metadata);
}

/**
 * Makes a `fetch` that authorizes each request through the broker: `AuthorizeRequest(tenant, target,
 * method, url, nonce, careContext)` (or `AuthorizeSessionRequest` with `sessionId`), the answer's headers
 * set on the request, a single retry on a nonce challenge, and the origin's nonce remembered. A 403 with
 * `error="insufficient_authorization_details"` rejects with a `BrokerError` (`code` PERMISSION_DENIED,
 * `reason` INSUFFICIENT_AUTHORIZATION_DETAILS); any other answer, other 403s too, is returned as is.
 */
export function createFetch(options: FetchOptions): BrokerFetch {
  if (!options.sessionId && !options.tenant) {
    throw new Error("createFetch needs a tenant (or a sessionId)");
  }
  const ownsClient = options.client === undefined;
  const client = options.client ?? connect(options);
  const send = options.fetch ?? globalThis.fetch;
  const nonces: NonceStore = options.nonces ?? new Map<string, string>();
  const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;

  const authorize = async (
    method: string,
    url: string,
    nonce: string | undefined,
    careContext: CareContext | undefined,
  ): Promise<Authorization> => {
    if (options.sessionId) {
      const request = AuthorizeSessionRequestRequest.fromPartial({
        sessionId: options.sessionId,
        target: options.target,
        httpMethod: method,
        url,
        dpopNonce: nonce ?? "",
        careContext,
      });
      return unary(client, client.authorizeSessionRequest, request, deadlineMs);
    }
    const request = AuthorizeRequestRequest.fromPartial({
      tenant: options.tenant,
      target: options.target,
      httpMethod: method,
      url,
      dpopNonce: nonce ?? "",
      careContext,
    });
    return unary(client, client.authorizeRequest, request, deadlineMs);
  };

  const brokerFetch = async (input: string | URL | Request, init?: BrokerRequestInit): Promise<Response> => {
    const { careContext: perRequest, ...rest } = init ?? {};
    const careContext = perRequest ?? options.careContext;
    const request = new Request(input, rest);
    const callerSignal = rest.signal != null || input instanceof Request;
    // The body is read once into memory so that a retry can send it again.
    const body = request.body === null ? null : new Uint8Array(await request.arrayBuffer());
    const url = request.url;
    const origin = new URL(url).origin;
    const method = request.method;

    const attempt = async (nonce: string | undefined): Promise<Response> => {
      const auth = await authorize(method, url, nonce, careContext);
      const headers = new Headers(request.headers);
      headers.set("authorization", auth.authorization);
      if (auth.dpop) {
        headers.set("dpop", auth.dpop);
      } else {
        headers.delete("dpop");
      }
      for (const h of auth.headers) {
        headers.set(h.name, h.value);
      }
      const response = await send(url, {
        method,
        headers,
        body,
        // The request's own signal only when the caller gave one: following a signal costs time per request.
        signal: callerSignal ? request.signal : undefined,
        redirect: request.redirect,
      });
      const newNonce = response.headers.get("dpop-nonce");
      if (newNonce) {
        nonces.set(origin, newNonce);
      }
      return response;
    };

    let response = await attempt(nonces.get(origin));
    if (isNonceChallenge(response)) {
      await response.body?.cancel().catch(() => undefined);
      response = await attempt(response.headers.get("dpop-nonce") ?? undefined);
    }
    const refused = insufficientAuthorizationDetails(response);
    if (refused !== undefined) {
      await response.body?.cancel().catch(() => undefined);
      throw insufficientAuthorizationDetailsError(method, url, response.status, refused);
    }
    return response;
  };

  return Object.assign(brokerFetch, {
    nonces,
    close(): void {
      if (ownsClient) {
        client.close();
      }
    },
  });
}

let defaultFetches: Map<string, BrokerFetch> | undefined;

/**
 * One-off form of `createFetch`: `brokerFetch(url, { tenant, target, method, body, careContext })`. The
 * connection (from the environment) and the nonce memory are shared per tenant and target and live until
 * `closeBrokerFetch()`.
 */
export function brokerFetch(
  input: string | URL | Request,
  init: BrokerRequestInit & { tenant: string; target: string },
): Promise<Response> {
  const { tenant, target, ...rest } = init;
  defaultFetches ??= new Map();
  const key = JSON.stringify([tenant, target]);
  let f = defaultFetches.get(key);
  if (f === undefined) {
    const first = defaultFetches.values().next().value as BrokerFetch | undefined;
    f = createFetch({ tenant, target, client: sharedClient(), nonces: first?.nonces });
    defaultFetches.set(key, f);
  }
  return f(input, rest);
}

let shared: TokenBrokerServiceClient | undefined;
function sharedClient(): TokenBrokerServiceClient {
  shared ??= connect();
  return shared;
}

/** Closes the connection `brokerFetch` opened. */
export function closeBrokerFetch(): void {
  shared?.close();
  shared = undefined;
  defaultFetches = undefined;
}
