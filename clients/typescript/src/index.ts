/**
 * TypeScript client of the HelseID token broker.
 *
 * `TokenBrokerServiceClient` and the messages come from `./gen`, which scripts/generate-clients.sh
 * generates from protos/ (ts-proto on @grpc/grpc-js); never edit it by hand. This file adds one helper:
 * reading the broker's `ErrorInfo` from a failed call.
 */
import type { ServiceError } from "@grpc/grpc-js";

import { ErrorInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

export * from "./gen/broker/v1/token_broker_service";
export { ErrorInfo } from "./gen/google/rpc/error_details";

/** The `google.rpc.ErrorInfo` domain of every error the broker returns. */
export const ERROR_DOMAIN = "broker.helseid";

const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";

/**
 * Returns the `ErrorInfo` that the broker attaches to every error status (AIP-193), or `undefined` when
 * `err` carries none. grpc-js leaves the `google.rpc.Status` packed in the `grpc-status-details-bin`
 * trailer; this decodes it. Branch on `reason` (stable, such as `TENANT_NOT_FOUND`), never on the message;
 * `metadata` holds the values the message names.
 */
export function errorInfo(err: ServiceError): ErrorInfo | undefined {
  for (const packed of err.metadata?.get("grpc-status-details-bin") ?? []) {
    if (typeof packed === "string") {
      continue; // binary (-bin) metadata values are always Buffers; a string is not a Status
    }
    for (const detail of Status.decode(packed).details) {
      if (detail.typeUrl !== ERROR_INFO_TYPE_URL) {
        continue;
      }
      const info = ErrorInfo.decode(detail.value);
      if (info.domain === ERROR_DOMAIN) {
        return info;
      }
    }
  }
  return undefined;
}
