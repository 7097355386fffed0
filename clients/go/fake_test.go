package broker_test

// Tests against an in-process fake broker and a local HTTP server: the retry, back-off, fallback, error and
// credential logic, with no broker process. They run whatever the environment says.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	broker "github.com/helseid-broker/helseid-broker/clients/go"
	"github.com/helseid-broker/helseid-broker/clients/go/brokerv1"
)

type fakeBroker struct {
	brokerv1.UnimplementedTokenBrokerServiceServer
	mu        sync.Mutex
	getTokens int
	watches   int
	lifetime  time.Duration
	watch     func(n int, stream brokerv1.TokenBrokerService_WatchTokenServer) error
	auth      []string // the authorization metadata of each call
	serial    atomic.Int64
}

func (f *fakeBroker) token() *brokerv1.AccessToken {
	return &brokerv1.AccessToken{
		Token: fmt.Sprintf("tok-%d", f.serial.Add(1)), TokenType: brokerv1.TokenType_TOKEN_TYPE_BEARER,
		ExpireTime: timestamppb.New(time.Now().Add(f.lifetime).Add(time.Duration(f.serial.Load()) * time.Millisecond)),
	}
}

func (f *fakeBroker) note(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.auth = append(f.auth, strings.Join(md.Get("authorization"), ","))
	f.mu.Unlock()
}

func brokerError(code codes.Code, reason string, retry time.Duration) error {
	st := status.New(code, "the fake says "+reason)
	withInfo, _ := st.WithDetails(&errdetails.ErrorInfo{Domain: broker.ErrorDomain, Reason: reason,
		Metadata: map[string]string{"tenant": "nope"}})
	if retry > 0 {
		withInfo, _ = withInfo.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	return withInfo.Err()
}

func (f *fakeBroker) GetToken(ctx context.Context, req *brokerv1.GetTokenRequest) (*brokerv1.GetTokenResponse, error) {
	f.note(ctx)
	f.mu.Lock()
	f.getTokens++
	f.mu.Unlock()
	switch req.GetTenant() {
	case "nope":
		return nil, brokerError(codes.NotFound, "TENANT_NOT_FOUND", 0)
	case "busy":
		return nil, brokerError(codes.ResourceExhausted, "RATE_LIMITED", 3*time.Second)
	}
	return &brokerv1.GetTokenResponse{AccessToken: f.token()}, nil
}

func (f *fakeBroker) WatchToken(req *brokerv1.WatchTokenRequest, stream brokerv1.TokenBrokerService_WatchTokenServer) error {
	f.mu.Lock()
	f.watches++
	n := f.watches
	f.mu.Unlock()
	return f.watch(n, stream)
}

func (f *fakeBroker) AuthorizeRequest(ctx context.Context, req *brokerv1.AuthorizeRequestRequest) (*brokerv1.AuthorizeRequestResponse, error) {
	f.note(ctx)
	resp := &brokerv1.AuthorizeRequestResponse{
		Authorization: "DPoP tok", Dpop: "proof nonce=" + req.GetDpopNonce() + " " + req.GetHttpMethod() + " " + req.GetUrl(),
		TokenType: brokerv1.TokenType_TOKEN_TYPE_DPOP,
	}
	if id := req.GetCareContext().GetPatientId(); id != "" {
		resp.Headers = append(resp.Headers, &brokerv1.HttpHeader{Name: "person-id", Value: id})
	}
	return resp, nil
}

func (f *fakeBroker) AuthorizeSessionRequest(ctx context.Context, req *brokerv1.AuthorizeSessionRequestRequest) (*brokerv1.AuthorizeSessionRequestResponse, error) {
	f.note(ctx)
	if req.GetSessionId() != "s-1" {
		return nil, brokerError(codes.NotFound, "SESSION_NOT_FOUND", 0)
	}
	return &brokerv1.AuthorizeSessionRequestResponse{
		Authorization: "DPoP user", Dpop: "proof nonce=" + req.GetDpopNonce() + " " + req.GetHttpMethod(),
		TokenType: brokerv1.TokenType_TOKEN_TYPE_DPOP,
	}, nil
}

func startFake(t *testing.T, f *fakeBroker) string {
	t.Helper()
	if f.lifetime == 0 {
		f.lifetime = time.Minute
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	brokerv1.RegisterTokenBrokerServiceServer(server, f)
	go func() { _ = server.Serve(lis) }()
	t.Cleanup(server.Stop)
	return lis.Addr().String()
}

func dialFake(t *testing.T, f *fakeBroker, opts ...broker.DialOption) *broker.Client {
	t.Helper()
	addr := startFake(t, f)
	client, err := broker.Dial(context.Background(), append([]broker.DialOption{broker.WithAddress(addr),
		broker.WithCredential("")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// nonceServer is a resource server that wants the current nonce in the proof; rotate says whether it makes a
// new nonce after every request (so that no request ever succeeds).
type nonceServer struct {
	mu      sync.Mutex
	nonce   int
	rotate  bool
	trips   int
	bodies  []string
	persons []string
}

func (s *nonceServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trips++
	current := fmt.Sprintf("n%d", s.nonce)
	if s.rotate {
		s.nonce++
		current = fmt.Sprintf("n%d", s.nonce)
	}
	w.Header().Set("DPoP-Nonce", current)
	if !strings.Contains(r.Header.Get("DPoP"), "nonce="+current+" ") {
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="nonce"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	s.bodies = append(s.bodies, string(body))
	s.persons = append(s.persons, r.Header.Get("person-id"))
	_, _ = io.WriteString(w, "ok")
}

func (s *nonceServer) takeTrips() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.trips
	s.trips = 0
	return n
}

func TestFakeTransportRetriesOnceAndReplaysBody(t *testing.T) {
	client := dialFake(t, &fakeBroker{})
	rs := &nonceServer{}
	server := httptest.NewServer(rs)
	defer server.Close()
	httpClient := client.HTTPClient("demo", "api")

	ctx := broker.WithCareContext(context.Background(), &brokerv1.CareContext{PatientId: "13116900216"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, server.URL+"/x", io.MultiReader(strings.NewReader("payload")))
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || rs.takeTrips() != 2 {
		t.Fatalf("status %d; want 200 after one retry", resp.StatusCode)
	}
	if rs.bodies[0] != "payload" || rs.persons[0] != "13116900216" {
		t.Fatalf("server saw body %q, person-id %q", rs.bodies[0], rs.persons[0])
	}
	resp, err = httpClient.Get(server.URL + "/y")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || rs.takeTrips() != 1 {
		t.Fatal("the second request should take one round trip")
	}

	// A server that never accepts: exactly one retry, then its answer.
	rs.mu.Lock()
	rs.rotate = true
	rs.mu.Unlock()
	resp, err = httpClient.Post(server.URL+"/z", "text/plain", strings.NewReader("again"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if trips := rs.takeTrips(); resp.StatusCode != 401 || trips != 2 {
		t.Fatalf("status %d after %d trips; want 401 after 2", resp.StatusCode, trips)
	}
}

func TestFakeTransportConcurrentUse(t *testing.T) {
	client := dialFake(t, &fakeBroker{})
	rs := &nonceServer{}
	server := httptest.NewServer(rs)
	defer server.Close()
	httpClient := client.HTTPClient("demo", "api")
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				resp, err := httpClient.Get(server.URL + "/c")
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of 320 concurrent requests failed", failures.Load())
	}
}

func TestFakeTokenSourceReconnectsAfterStreamBreaks(t *testing.T) {
	f := &fakeBroker{}
	f.watch = func(n int, stream brokerv1.TokenBrokerService_WatchTokenServer) error {
		token := f.token()
		token.Token = fmt.Sprintf("watch-%d", n)
		if err := stream.Send(&brokerv1.WatchTokenResponse{AccessToken: token}); err != nil {
			return err
		}
		if n < 3 {
			return status.Error(codes.Unavailable, "going away")
		}
		<-stream.Context().Done()
		return nil
	}
	client := dialFake(t, f)
	source := client.TokenSource(context.Background(), "demo", "api", broker.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	defer source.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := source.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		token, err := source.Token()
		if err != nil {
			t.Fatal(err)
		}
		if token.AccessToken == "watch-3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token %s after 5 s, want watch-3 from the third stream", token.AccessToken)
		}
		time.Sleep(5 * time.Millisecond)
	}
	streams, fallbacks := source.Stats()
	if streams != 3 || fallbacks != 0 {
		t.Fatalf("%d streams, %d fallbacks; want 3 and 0", streams, fallbacks)
	}
}

func TestFakeTokenSourceFallsBackToGetToken(t *testing.T) {
	f := &fakeBroker{}
	f.watch = func(int, brokerv1.TokenBrokerService_WatchTokenServer) error {
		return status.Error(codes.Unavailable, "no stream today")
	}
	client := dialFake(t, f)
	source := client.TokenSource(context.Background(), "demo", "api", broker.WithBackoff(time.Millisecond, 5*time.Millisecond))
	defer source.Close()
	for i := 0; i < 100; i++ {
		if _, err := source.Token(); err != nil {
			t.Fatal(err)
		}
	}
	if _, fallbacks := source.Stats(); fallbacks != 1 {
		t.Fatalf("%d GetToken fallbacks for 100 reads, want 1", fallbacks)
	}
}

func TestFakeTokenSourceNeverHandsOutATokenWithinTheSkew(t *testing.T) {
	f := &fakeBroker{lifetime: 3 * time.Second}
	f.watch = func(int, brokerv1.TokenBrokerService_WatchTokenServer) error {
		return status.Error(codes.Unavailable, "down")
	}
	client := dialFake(t, f)
	source := client.TokenSource(context.Background(), "demo", "api", broker.WithExpirySkew(5*time.Second))
	defer source.Close()
	if token, err := source.Token(); err == nil {
		t.Fatalf("got %+v expiring within the skew", token)
	}
	source2 := client.TokenSource(context.Background(), "demo", "api", broker.WithExpirySkew(time.Second))
	defer source2.Close()
	if _, err := source2.Token(); err != nil {
		t.Fatalf("with a 1 s skew: %v", err)
	}
}

func TestFakeErrorsAreTyped(t *testing.T) {
	f := &fakeBroker{}
	f.watch = func(int, brokerv1.TokenBrokerService_WatchTokenServer) error {
		return brokerError(codes.ResourceExhausted, "RATE_LIMITED", time.Second)
	}
	client := dialFake(t, f)
	source := client.TokenSource(context.Background(), "busy", "api")
	defer source.Close()
	_, err := source.Token()
	var e *broker.Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is no *broker.Error", err)
	}
	if e.Reason != "RATE_LIMITED" || e.RetryDelay != 3*time.Second || e.Code != codes.ResourceExhausted ||
		e.Metadata["tenant"] != "nope" || status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("error = %+v", e)
	}
	if !strings.Contains(e.Error(), "RATE_LIMITED") {
		t.Fatalf("Error() = %q", e.Error())
	}
	if broker.AsError(errors.New("plain")) != nil || broker.AsError(nil) != nil {
		t.Fatal("AsError of a non-status error must be nil")
	}
}

func TestFakeCallerCredential(t *testing.T) {
	f := &fakeBroker{}
	client := dialFake(t, f, broker.WithCredential("s3cret"))
	if _, err := client.Broker.GetToken(context.Background(), &brokerv1.GetTokenRequest{Tenant: "demo", Target: "api"}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.auth[len(f.auth)-1]
	f.mu.Unlock()
	if got != "Bearer s3cret" {
		t.Fatalf("authorization metadata = %q, want \"Bearer s3cret\"", got)
	}
	// Off the machine, a credential never goes in plaintext.
	if _, err := broker.Dial(context.Background(), broker.WithAddress("broker.invalid:50051"),
		broker.WithPlaintext(), broker.WithCredential("s3cret")); err == nil {
		t.Fatal("Dial sent a credential in plaintext to a remote address")
	}
	if !broker.CallerCredential("c", "broker.invalid:50051").RequireTransportSecurity() {
		t.Fatal("a remote credential must require transport security")
	}
	if broker.CallerCredential("c", "127.0.0.1:50051").RequireTransportSecurity() {
		t.Fatal("a loopback credential need not require transport security")
	}
	// The default for a remote address is TLS, so a credential is allowed.
	remote, err := broker.Dial(context.Background(), broker.WithAddress("broker.invalid:50051"), broker.WithCredential("c"))
	if err != nil {
		t.Fatalf("Dial with TLS: %v", err)
	}
	_ = remote.Close()
}

func TestFakeSessionTransport(t *testing.T) {
	client := dialFake(t, &fakeBroker{})
	rs := &nonceServer{}
	server := httptest.NewServer(rs)
	defer server.Close()
	session := &http.Client{Transport: client.SessionTransport("s-1", "api", nil)}
	resp, err := session.Get(server.URL + "/me")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if trips := rs.takeTrips(); resp.StatusCode != 200 || trips != 2 {
		t.Fatalf("status %d after %d trips, want 200 after 2", resp.StatusCode, trips)
	}
	_, err = (&http.Client{Transport: client.SessionTransport("gone", "api", nil)}).Get(server.URL)
	if e := broker.AsError(err); e == nil || e.Reason != "SESSION_NOT_FOUND" {
		t.Fatalf("error %v, want SESSION_NOT_FOUND", err)
	}
}

// TestFakeTransportInsufficientAuthorizationDetails: a 403 asking for the attest (DPoP, after a nonce retry,
// or Bearer) is a typed error; other 403s stay ordinary answers.
func TestFakeTransportInsufficientAuthorizationDetails(t *testing.T) {
	client := dialFake(t, &fakeBroker{})
	mux := http.NewServeMux()
	mux.HandleFunc("/attest", func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("DPoP"), "nonce=n0 ") {
			w.Header().Set("DPoP-Nonce", "n0")
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("WWW-Authenticate", `DPoP error="insufficient_authorization_details", error_description="attest needed"`)
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":"insufficient_authorization_details"}`)
	})
	mux.HandleFunc("/bearer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="insufficient_authorization_details"`)
		w.WriteHeader(http.StatusForbidden)
	})
	mux.HandleFunc("/forbidden", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `DPoP error="insufficient_scope"`)
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, "no")
	})
	server := httptest.NewServer(mux)
	defer server.Close()
	httpClient := client.HTTPClient("demo", "api")

	_, err := httpClient.Post(server.URL+"/attest", "text/plain", strings.NewReader("body"))
	e := broker.AsError(err)
	if e == nil || e.Reason != broker.ReasonInsufficientAuthorizationDetails || e.Code != codes.PermissionDenied ||
		status.Code(err) != codes.PermissionDenied {
		t.Fatalf("error %v, want %s", err, broker.ReasonInsufficientAuthorizationDetails)
	}
	if !strings.Contains(e.Message, "care context") || !strings.Contains(e.Message, "attest needed") ||
		e.Metadata["scheme"] != "DPoP" || e.Metadata["origin"] != server.URL {
		t.Fatalf("message %q, metadata %v", e.Message, e.Metadata)
	}
	if info := broker.ErrorInfo(e.GRPCStatus().Err()); info.GetReason() != broker.ReasonInsufficientAuthorizationDetails {
		t.Fatalf("ErrorInfo = %v", info)
	}

	_, err = httpClient.Get(server.URL + "/bearer")
	if e := broker.AsError(err); e == nil || e.Reason != broker.ReasonInsufficientAuthorizationDetails ||
		e.Metadata["scheme"] != "Bearer" {
		t.Fatalf("bearer challenge: error %v", err)
	}

	resp, err := httpClient.Get(server.URL + "/forbidden")
	if err != nil {
		t.Fatalf("another 403 is an ordinary answer, got %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || string(body) != "no" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}
