// Package broker holds the one helper that the generated stubs in package brokerv1 lack: reading the
// broker's error details. Call the broker with brokerv1.NewTokenBrokerServiceClient on a grpc.ClientConn.
//
// Regenerate brokerv1 with scripts/generate-clients.sh; never edit it by hand.
package broker

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error the broker returns.
const ErrorDomain = "broker.helseid"

// ErrorInfo returns the ErrorInfo detail that the broker attaches to every error status (AIP-193), or nil
// when err is not such a status. Branch on its Reason, which is stable (such as "TENANT_NOT_FOUND" or
// "TARGET_NOT_FOUND"), never on the message; its Metadata holds the values the message names.
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
