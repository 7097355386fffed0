/**
 * Opening a connection to the broker: the address from `HELSEID_BROKER_ADDR` (else 127.0.0.1:50051), the
 * caller's credential from `HELSEID_BROKER_CREDENTIAL` sent as `authorization: Bearer ...` call metadata,
 * and TLS (system roots, a CA, a client certificate for mTLS). A credential is never sent over plaintext to
 * an address that is not loopback.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";

import {
  type CallOptions,
  type ChannelCredentials,
  type ClientOptions,
  credentials as grpcCredentials,
  type Interceptor,
  InterceptingCall,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";

import { TokenBrokerServiceClient } from "./gen/broker/v1/token_broker_service.js";
import { BrokerError } from "./errors.js";

/** The environment variable with the broker's address (`host:port`). */
export const ADDRESS_ENV = "HELSEID_BROKER_ADDR";
/** The environment variable with the caller's credential. */
export const CREDENTIAL_ENV = "HELSEID_BROKER_CREDENTIAL";
/** The address used when neither the options nor the environment name one. */
export const DEFAULT_ADDRESS = "127.0.0.1:50051";

/** TLS to the broker. PEM contents are strings or Buffers; `*File` options read a PEM file instead. */
export interface TlsOptions {
  /** CA certificate(s) to trust for the broker's certificate; the system's roots when absent. */
  ca?: string | Buffer;
  caFile?: string;
  /** A client certificate chain and its key, for mTLS. */
  cert?: string | Buffer;
  certFile?: string;
  key?: string | Buffer;
  keyFile?: string;
  /** The name the broker's certificate carries, when the address uses another (an IP, a port-forward). */
  serverName?: string;
}

export interface ConnectOptions {
  /** `host:port`; default: `HELSEID_BROKER_ADDR`, else 127.0.0.1:50051. */
  address?: string;
  /** The caller's credential; default: `HELSEID_BROKER_CREDENTIAL` when set. `null` sends none. */
  credential?: string | null;
  /** `true`: TLS with the system's roots; an object: TLS with these options; default: plaintext. */
  tls?: boolean | TlsOptions;
  /** Extra grpc-js channel options. */
  channelOptions?: Partial<ClientOptions>;
}

/** The broker's address: the argument, else `HELSEID_BROKER_ADDR`, else 127.0.0.1:50051. */
export function brokerAddress(address?: string): string {
  return address || process.env[ADDRESS_ENV] || DEFAULT_ADDRESS;
}

/** The host part of `host:port`, `[v6]:port`, or a `dns:`/`ipv4:`/`ipv6:` target. */
function hostOf(address: string): string {
  let a = address.replace(/^(dns|ipv4|ipv6):(\/\/[^/]*\/)?/, "");
  if (a.startsWith("[")) {
    return a.slice(1, a.indexOf("]") > 0 ? a.indexOf("]") : undefined);
  }
  const colon = a.lastIndexOf(":");
  if (colon > 0 && a.indexOf(":") === colon) {
    a = a.slice(0, colon);
  }
  return a;
}

/** Whether an address is on loopback: `localhost`, 127.0.0.0/8, ::1 or a unix socket. */
export function isLoopback(address: string): boolean {
  if (address.startsWith("unix:")) {
    return true;
  }
  const host = hostOf(address).toLowerCase().replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) {
    return true;
  }
  if (isIP(host) === 4) {
    return host.startsWith("127.");
  }
  if (isIP(host) === 6) {
    return host === "::1" || host === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(host);
  }
  return false;
}

function pem(value: string | Buffer | undefined, file: string | undefined): Buffer | undefined {
  if (value !== undefined) {
    return Buffer.isBuffer(value) ? value : Buffer.from(value);
  }
  return file === undefined ? undefined : readFileSync(file);
}

function channelCredentials(tls: boolean | TlsOptions | undefined): ChannelCredentials {
  if (!tls) {
    return grpcCredentials.createInsecure();
  }
  const o: TlsOptions = tls === true ? {} : tls;
  const key = pem(o.key, o.keyFile);
  const cert = pem(o.cert, o.certFile);
  if ((key === undefined) !== (cert === undefined)) {
    throw new Error("TLS: a client certificate needs its key, and a key its certificate");
  }
  return grpcCredentials.createSsl(pem(o.ca, o.caFile) ?? null, key ?? null, cert ?? null);
}

/** An interceptor that adds `authorization: Bearer <credential>` to every call's metadata. */
export function credentialInterceptor(credential: string): Interceptor {
  const value = `Bearer ${credential}`;
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", value);
        next(metadata, listener);
      },
    });
}

/**
 * Opens a `TokenBrokerServiceClient` (the generated stub) with the address, credential and TLS from
 * `options` and the environment. Close it with `client.close()`.
 */
export function connect(options: ConnectOptions = {}): TokenBrokerServiceClient {
  const address = brokerAddress(options.address);
  const credential =
    options.credential === null ? undefined : options.credential || process.env[CREDENTIAL_ENV] || undefined;
  if (credential !== undefined && !options.tls && !isLoopback(address)) {
    throw new Error(
      `refusing to send the broker credential over plaintext to ${address}, which is not loopback: ` +
        "connect with tls",
    );
  }
  const clientOptions: Partial<ClientOptions> = { ...options.channelOptions };
  const serverName = typeof options.tls === "object" ? options.tls.serverName : undefined;
  if (serverName) {
    clientOptions["grpc.ssl_target_name_override"] = serverName;
    clientOptions["grpc.default_authority"] = serverName;
  }
  if (credential !== undefined) {
    clientOptions.interceptors = [...(clientOptions.interceptors ?? []), credentialInterceptor(credential)];
  }
  return new TokenBrokerServiceClient(address, channelCredentials(options.tls), clientOptions);
}

/** The default deadline of a unary call, in milliseconds. */
export const DEFAULT_DEADLINE_MS = 10_000;

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => unknown;

/**
 * Calls a generated unary method (`client.getToken`, ...) with a deadline; resolves with the response or
 * rejects with a `BrokerError`.
 */
export function unary<Req, Res>(
  client: TokenBrokerServiceClient,
  method: Unary<Req, Res>,
  request: Req,
  deadlineMs: number = DEFAULT_DEADLINE_MS,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, new Metadata(), { deadline: Date.now() + deadlineMs }, (error, response) =>
      error ? reject(BrokerError.from(error)) : resolve(response),
    );
  });
}
