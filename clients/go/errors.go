package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is an error the broker answered with: its gRPC code, the ErrorInfo reason (domain broker.helseid,
// such as "TENANT_NOT_FOUND" or "URL_NOT_ALLOWED"), the message, the ErrorInfo metadata and the RetryInfo
// delay. Every helper of this package returns broker errors as *Error (possibly wrapped, for instance in a
// *url.Error by http.Client), so errors.As finds it:
//
//	var e *broker.Error
//	if errors.As(err, &e) && e.Reason == "RATE_LIMITED" { time.Sleep(e.RetryDelay) }
//
// Branch on Reason, never on Message. status.FromError and status.Code work on it too. One such error comes
// from the resource server rather than the broker: Transport's ReasonInsufficientAuthorizationDetails
// (PermissionDenied), for a 403 that asks for the trust framework's attest.
type Error struct {
	// Code is the gRPC status code, such as codes.NotFound.
	Code codes.Code
	// Reason is the ErrorInfo reason; empty when the status carried none (such as a transport failure).
	Reason string
	// Message is the status message, for people.
	Message string
	// Metadata is the ErrorInfo metadata: the values the message names.
	Metadata map[string]string
	// RetryDelay is the RetryInfo delay: how long to wait before trying again; 0 when the broker gave none.
	RetryDelay time.Duration

	status *status.Status
}

// Error implements error.
func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("broker: %s (%s): %s", e.Reason, e.Code, e.Message)
	}
	return fmt.Sprintf("broker: %s: %s", e.Code, e.Message)
}

// GRPCStatus returns the status the broker answered with, so that status.FromError and status.Code work.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Is reports whether target is a context error matching this status's code (so that errors.Is(err,
// context.DeadlineExceeded) keeps working for a deadline that passed during a call).
func (e *Error) Is(target error) bool {
	switch target {
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	case context.Canceled:
		return e.Code == codes.Canceled
	}
	return false
}

// AsError returns the *Error in err's chain, or converts a gRPC status error into one; nil otherwise.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	return fromStatus(st)
}

// wrapError turns an error of a generated stub into an *Error; nil stays nil, other errors are unchanged.
func wrapError(err error) error {
	if err == nil {
		return nil
	}
	if e := AsError(err); e != nil {
		return e
	}
	return err
}

func fromStatus(st *status.Status) *Error {
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == ErrorDomain || e.Reason == "" {
				e.Reason = d.GetReason()
				e.Metadata = d.GetMetadata()
			}
		case *errdetails.RetryInfo:
			if delay := d.GetRetryDelay(); delay != nil {
				e.RetryDelay = delay.AsDuration()
			}
		}
	}
	return e
}
