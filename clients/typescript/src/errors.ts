/**
 * The broker's errors as typed values: a failed call is a `BrokerError` carrying the gRPC code, the
 * `google.rpc.ErrorInfo` reason (domain `broker.helseid`) and the `google.rpc.RetryInfo` delay, read from
 * the `grpc-status-details-bin` trailer.
 */
import { type ServiceError, status as Code } from "@grpc/grpc-js";

import { Duration } from "./gen/google/protobuf/duration.js";
import { ErrorInfo, RetryInfo } from "./gen/google/rpc/error_details.js";
import { Status } from "./gen/google/rpc/status.js";

/** The `google.rpc.ErrorInfo` domain of every error the broker returns. */
export const ERROR_DOMAIN = "broker.helseid";

/**
 * The `reason` of the `BrokerError` the fetch wrapper throws when a resource server answers 403 with
 * `error="insufficient_authorization_details"`: the request needs a care context with the trust framework's
 * attest (a session token made with a care context). Set by the client, not sent by the broker.
 */
export const INSUFFICIENT_AUTHORIZATION_DETAILS = "INSUFFICIENT_AUTHORIZATION_DETAILS";

const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";
const RETRY_INFO_TYPE_URL = "type.googleapis.com/google.rpc.RetryInfo";

/** The gRPC status codes by number (`Code.NOT_FOUND === 5`), re-exported from @grpc/grpc-js. */
export { Code };

function decodedStatus(err: Partial<ServiceError>): Status | undefined {
  for (const packed of err.metadata?.get("grpc-status-details-bin") ?? []) {
    if (typeof packed === "string") {
      continue; // binary (-bin) metadata values are always Buffers; a string is not a Status
    }
    try {
      return Status.decode(packed);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * Returns the `ErrorInfo` that the broker attaches to every error status (AIP-193), or `undefined` when
 * `err` carries none. Branch on `reason` (stable, such as `TENANT_NOT_FOUND`), never on the message.
 */
export function errorInfo(err: Partial<ServiceError>): ErrorInfo | undefined {
  for (const detail of decodedStatus(err)?.details ?? []) {
    if (detail.typeUrl === ERROR_INFO_TYPE_URL) {
      const info = ErrorInfo.decode(detail.value);
      if (info.domain === ERROR_DOMAIN) {
        return info;
      }
    }
  }
  return undefined;
}

function durationMs(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : d.seconds * 1000 + Math.round(d.nanos / 1e6);
}

/** A failed broker call: the gRPC `code`, the broker's `reason` and, when it sent one, a `retryDelayMs`. */
export class BrokerError extends Error {
  override readonly name = "BrokerError";
  /** The gRPC status code (`Code.NOT_FOUND`, ...). */
  readonly code: number;
  /** `ErrorInfo.reason`, such as `TENANT_NOT_FOUND`; `undefined` when the status carries no ErrorInfo. */
  readonly reason: string | undefined;
  /** `RetryInfo.retry_delay` in milliseconds, when the broker says when to try again. */
  readonly retryDelayMs: number | undefined;
  /** `ErrorInfo.metadata`: the values the message names (`caller`, `incident`, ...). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The status message as the broker sent it. */
  readonly details: string;

  constructor(
    code: number,
    details: string,
    reason?: string,
    retryDelayMs?: number,
    metadata: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(`${Code[code] ?? code}${reason ? ` (${reason})` : ""}: ${details}`, options);
    this.code = code;
    this.details = details;
    this.reason = reason;
    this.retryDelayMs = retryDelayMs;
    this.metadata = metadata;
  }

  /** Converts a failed call's error (a grpc-js `ServiceError`) into a `BrokerError`; returns others as is. */
  static from(err: unknown): BrokerError | unknown {
    if (err instanceof BrokerError) {
      return err;
    }
    if (typeof err !== "object" || err === null || typeof (err as ServiceError).code !== "number") {
      return err;
    }
    const e = err as ServiceError;
    let reason: string | undefined;
    let retryDelayMs: number | undefined;
    let metadata: Record<string, string> = {};
    for (const detail of decodedStatus(e)?.details ?? []) {
      if (detail.typeUrl === ERROR_INFO_TYPE_URL) {
        const info = ErrorInfo.decode(detail.value);
        if (info.domain === ERROR_DOMAIN) {
          reason = info.reason;
          metadata = info.metadata;
        }
      } else if (detail.typeUrl === RETRY_INFO_TYPE_URL) {
        retryDelayMs = durationMs(RetryInfo.decode(detail.value).retryDelay);
      }
    }
    return new BrokerError(e.code, e.details ?? e.message, reason, retryDelayMs, metadata, { cause: err });
  }
}
