/**
 * TypeScript client of the HelseID token broker (proto package `broker.v1`).
 *
 * - `TokenSource`: a locally cached token fed by WatchToken (`await source.token()`).
 * - `createFetch` / `brokerFetch`: a `fetch` that authorizes each request through the broker (DPoP proof,
 *   headers, one nonce retry, nonce memory per origin; a 403 `insufficient_authorization_details` is a
 *   `BrokerError` with reason `INSUFFICIENT_AUTHORIZATION_DETAILS`).
 * - `connect`: the generated `TokenBrokerServiceClient` with address, credential and TLS from the options
 *   and the environment (`HELSEID_BROKER_ADDR`, `HELSEID_BROKER_CREDENTIAL`).
 * - `BrokerError`: a failed call with its gRPC `code`, the broker's `reason` and `retryDelayMs`.
 *
 * The stubs and messages in `./gen` are generated from protos/ by scripts/generate-clients.sh (ts-proto on
 * @grpc/grpc-js); never edit them by hand.
 */
export * from "./gen/broker/v1/token_broker_service.js";
export { ErrorInfo, RetryInfo } from "./gen/google/rpc/error_details.js";
export { BrokerError, Code, ERROR_DOMAIN, errorInfo, INSUFFICIENT_AUTHORIZATION_DETAILS } from "./errors.js";
export {
  ADDRESS_ENV,
  brokerAddress,
  connect,
  type ConnectOptions,
  CREDENTIAL_ENV,
  credentialInterceptor,
  DEFAULT_ADDRESS,
  isLoopback,
  type TlsOptions,
  unary,
} from "./connection.js";
export { TokenSource, type TokenSourceOptions, type TokenSourceStats } from "./token-source.js";
export {
  authChallenge,
  type BrokerFetch,
  brokerFetch,
  type BrokerRequestInit,
  closeBrokerFetch,
  createFetch,
  dpopChallenge,
  type FetchOptions,
  insufficientAuthorizationDetails,
  isNonceChallenge,
  type NonceStore,
} from "./fetch.js";

/** This client's version; its major version follows the proto package (`broker.v1`). */
export const VERSION = "1.0.0";
