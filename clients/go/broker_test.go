package broker_test

// These tests call a running broker at BROKER_ADDR (host:port, plaintext), as tests/clients/test_clients.py
// starts one: on embedded defaults, with tenant "demo" and the DPoP target "demo-api".

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	broker "github.com/helseid-broker/helseid-broker/clients/go"
	"github.com/helseid-broker/helseid-broker/clients/go/brokerv1"
)

const (
	tenant = "demo"
	target = "demo-api"
)

// client dials BROKER_ADDR. An unset BROKER_ADDR fails the test: a skipped client test would hide a broken
// set-up on CI.
func client(t *testing.T) (brokerv1.TokenBrokerServiceClient, context.Context) {
	t.Helper()
	addr := os.Getenv("BROKER_ADDR")
	if addr == "" {
		t.Fatal("BROKER_ADDR is not set; run tests/clients/test_clients.py, which starts a broker")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return brokerv1.NewTokenBrokerServiceClient(conn), ctx
}

func requireFuture(t *testing.T, name string, ts *timestamppb.Timestamp) {
	t.Helper()
	if ts == nil {
		t.Fatalf("%s is not set", name)
	}
	if !ts.AsTime().After(time.Now()) {
		t.Fatalf("%s = %v, want a time in the future", name, ts.AsTime())
	}
}

func TestGetTokenReturnsDpopToken(t *testing.T) {
	c, ctx := client(t)
	resp, err := c.GetToken(ctx, &brokerv1.GetTokenRequest{Tenant: tenant, Target: target})
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	token := resp.GetAccessToken()
	if token.GetToken() == "" {
		t.Fatal("access_token.token is empty")
	}
	if got := token.GetTokenType(); got != brokerv1.TokenType_TOKEN_TYPE_DPOP {
		t.Fatalf("access_token.token_type = %v, want TOKEN_TYPE_DPOP", got)
	}
	requireFuture(t, "access_token.expire_time", token.GetExpireTime())
}

func TestAuthorizeRequestReturnsDpopHeaders(t *testing.T) {
	c, ctx := client(t)
	resp, err := c.AuthorizeRequest(ctx, &brokerv1.AuthorizeRequestRequest{
		Tenant:     tenant,
		Target:     target,
		HttpMethod: "GET",
		Url:        "https://api.demo.test/records",
	})
	if err != nil {
		t.Fatalf("AuthorizeRequest: %v", err)
	}
	if !strings.HasPrefix(resp.GetAuthorization(), "DPoP ") || len(resp.GetAuthorization()) == len("DPoP ") {
		t.Fatalf("authorization = %q, want \"DPoP <token>\"", resp.GetAuthorization())
	}
	if resp.GetDpop() == "" {
		t.Fatal("dpop is empty")
	}
	if got := resp.GetTokenType(); got != brokerv1.TokenType_TOKEN_TYPE_DPOP {
		t.Fatalf("token_type = %v, want TOKEN_TYPE_DPOP", got)
	}
	requireFuture(t, "expire_time", resp.GetExpireTime())
}

func TestGetTokenForUnknownTenantIsNotFound(t *testing.T) {
	c, ctx := client(t)
	_, err := c.GetToken(ctx, &brokerv1.GetTokenRequest{Tenant: "no-such-tenant", Target: target})
	if got := status.Code(err); got != codes.NotFound {
		t.Fatalf("code = %v (%v), want NotFound", got, err)
	}
	info := broker.ErrorInfo(err)
	if info == nil {
		t.Fatalf("no ErrorInfo with domain %q in %v", broker.ErrorDomain, status.Convert(err).Details())
	}
	if info.GetReason() != "TENANT_NOT_FOUND" {
		t.Fatalf("ErrorInfo.reason = %q, want TENANT_NOT_FOUND", info.GetReason())
	}
}
