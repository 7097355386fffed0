// Package broker is the Go client of the HelseID token broker: thin helpers over the generated gRPC stubs
// in package brokerv1.
//
//   - Dial connects to the broker (HELSEID_BROKER_ADDR, HELSEID_BROKER_CREDENTIAL, TLS options).
//   - TokenSource keeps a (tenant, target) token in memory, fed by the WatchToken stream; it implements
//     oauth2.TokenSource and a cached token costs no RPC.
//   - Transport is an http.RoundTripper that asks the broker for the Authorization and DPoP headers of each
//     request (AuthorizeRequest) and answers a resource server's use_dpop_nonce challenge with one retry.
//   - Error is the broker's error as a value: its ErrorInfo reason and RetryInfo delay.
//
// Regenerate brokerv1 with scripts/generate-clients.sh; never edit it by hand.
package broker

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Version is this client's version. Its major version follows the proto package (broker.v1).
const Version = "1.0.0"

// ErrorDomain is the google.rpc.ErrorInfo domain of every error the broker returns.
const ErrorDomain = "broker.helseid"

// ErrorInfo returns the ErrorInfo detail that the broker attaches to every error status (AIP-193), or nil
// when err is not such a status. Branch on its Reason, which is stable (such as "TENANT_NOT_FOUND" or
// "TARGET_NOT_FOUND"), never on the message; its Metadata holds the values the message names.
// AsError gives the same as a typed value.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info
		}
	}
	return nil
}
