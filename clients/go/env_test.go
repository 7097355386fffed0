package broker_test

// The tests in integration_test.go and the benchmarks call a running broker and its demo API, named by the
// environment variables tests/clients/test_go_client.py sets (from its demo_broker fixture):
//
//	HELSEID_BROKER_ADDR  DEMO_API_URL  DEMO_BEARER_URL  DEMO_STATS_URL  DEMO_ROTATE_URL
//	DEMO_TENANT  DEMO_TARGET  DEMO_BEARER_TARGET
//
// An unset variable fails the test (never skips it): a skipped client test would hide a broken set-up.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	broker "github.com/helseid-broker/helseid-broker/clients/go"
)

type testingT interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// env returns the environment variable name or fails the test with a message saying how to set it.
func env(t testingT, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set: these tests need a running broker with the demo API; run "+
			"`pytest tests/clients/test_go_client.py`, which starts one and sets HELSEID_BROKER_ADDR, "+
			"DEMO_API_URL, DEMO_BEARER_URL, DEMO_STATS_URL, DEMO_ROTATE_URL, DEMO_TENANT, DEMO_TARGET and "+
			"DEMO_BEARER_TARGET", name)
	}
	return value
}

// rpcCounter counts the unary RPCs and the streams a client starts.
type rpcCounter struct{ unary, streams atomic.Int64 }

func (c *rpcCounter) options() broker.DialOption {
	return broker.WithGRPCOptions(
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
			cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.unary.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
			method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			c.streams.Add(1)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	)
}

// dial connects to HELSEID_BROKER_ADDR the way an application does (broker.Dial reads the variable).
func dial(t testingT, opts ...broker.DialOption) *broker.Client {
	t.Helper()
	env(t, broker.EnvAddress)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := broker.Dial(ctx, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func testContext(t testingT) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// countingTransport counts the round trips it passes on and keeps the last request's headers.
type countingTransport struct {
	base   http.RoundTripper
	mu     sync.Mutex
	trips  int
	header http.Header
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.trips++
	c.header = req.Header.Clone()
	c.mu.Unlock()
	return c.base.RoundTrip(req)
}

func (c *countingTransport) take() (int, http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	trips, header := c.trips, c.header
	c.trips = 0
	return trips, header
}

func newCounting() *countingTransport {
	return &countingTransport{base: http.DefaultTransport.(*http.Transport).Clone()}
}

// demoAnswer is the demo API's JSON answer to a request it accepted.
type demoAnswer struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	ClientID  string `json:"client_id"`
	TokenType string `json:"token_type"`
	BodyBytes int    `json:"body_bytes"`
}

type demoStats struct {
	Requests        int `json:"requests"`
	NonceChallenges int `json:"nonce_challenges"`
	Accepted        int `json:"accepted"`
	Rejected        int `json:"rejected"`
}

func stats(t testingT) demoStats {
	t.Helper()
	resp, err := http.Get(env(t, "DEMO_STATS_URL"))
	if err != nil {
		t.Fatalf("GET stats: %v", err)
	}
	defer resp.Body.Close()
	var all struct {
		DemoAPI demoStats `json:"demo_api"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatalf("stats: %v", err)
	}
	return all.DemoAPI
}

func rotateNonce(t testingT) {
	t.Helper()
	resp, err := http.Post(env(t, "DEMO_ROTATE_URL"), "application/json", nil)
	if err != nil {
		t.Fatalf("rotate nonce: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("rotate nonce: %s", resp.Status)
	}
}

func mustParse(t testingT, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return u
}
