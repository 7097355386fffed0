package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	broker "github.com/helseid-broker/helseid-broker/clients/go"
	"github.com/helseid-broker/helseid-broker/clients/go/brokerv1"
)

// call sends one request through client and decodes the demo API's answer; it fails unless status is 200.
func call(t *testing.T, client *http.Client, method, url string, body io.Reader) demoAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s %s (WWW-Authenticate %q)", method, url, resp.Status, data,
			resp.Header.Get("WWW-Authenticate"))
	}
	var answer demoAnswer
	if err := json.Unmarshal(data, &answer); err != nil {
		t.Fatalf("answer %s: %v", data, err)
	}
	return answer
}

func requireTrips(t *testing.T, counting *countingTransport, want int, what string) http.Header {
	t.Helper()
	trips, header := counting.take()
	if trips != want {
		t.Fatalf("%s: %d round trips, want %d", what, trips, want)
	}
	return header
}

func TestTransportGetRetriesOnceForNonceThenNotAgain(t *testing.T) {
	client := dial(t)
	counting := newCounting()
	transport := client.Transport(env(t, "DEMO_TENANT"), env(t, "DEMO_TARGET"), counting)
	httpClient := &http.Client{Transport: transport}
	url := env(t, "DEMO_API_URL") + "records/1?x=y"

	before := stats(t)
	answer := call(t, httpClient, http.MethodGet, url, nil)
	header := requireTrips(t, counting, 2, "first GET (no nonce known yet)")
	after := stats(t)
	if got := after.NonceChallenges - before.NonceChallenges; got != 1 {
		t.Fatalf("demo API counted %d nonce challenges, want 1", got)
	}
	if got := after.Accepted - before.Accepted; got != 1 {
		t.Fatalf("demo API accepted %d requests, want 1", got)
	}
	if answer.Method != "GET" || answer.TokenType != "DPoP" || !strings.HasSuffix(answer.Path, "/records/1") {
		t.Fatalf("answer = %+v", answer)
	}
	if !strings.HasPrefix(header.Get("Authorization"), "DPoP ") || header.Get("DPoP") == "" {
		t.Fatalf("sent Authorization %q, DPoP %q", header.Get("Authorization"), header.Get("DPoP"))
	}
	if transport.Nonce(mustParse(t, url)) == "" {
		t.Fatal("no nonce remembered for the origin")
	}

	call(t, httpClient, http.MethodGet, url, nil)
	requireTrips(t, counting, 1, "second GET (nonce remembered)")
	if got := stats(t).NonceChallenges - after.NonceChallenges; got != 0 {
		t.Fatalf("second GET met %d nonce challenges, want 0", got)
	}
}

func TestTransportPostReplaysBodyOnNonceRetry(t *testing.T) {
	client := dial(t)
	counting := newCounting()
	httpClient := &http.Client{Transport: client.Transport(env(t, "DEMO_TENANT"), env(t, "DEMO_TARGET"), counting)}
	url := env(t, "DEMO_API_URL") + "documents"
	payload := bytes.Repeat([]byte(`{"k":"v"}`), 1000)

	// bytes.Reader: http.NewRequest sets GetBody, which the retry uses.
	answer := call(t, httpClient, http.MethodPost, url, bytes.NewReader(payload))
	requireTrips(t, counting, 2, "first POST")
	if answer.Method != "POST" || answer.BodyBytes != len(payload) {
		t.Fatalf("answer = %+v, want POST with %d body bytes", answer, len(payload))
	}

	// A reader without GetBody: the transport buffers the body. The rotated nonce forces the retry.
	rotateNonce(t)
	answer = call(t, httpClient, http.MethodPost, url, io.MultiReader(bytes.NewReader(payload)))
	requireTrips(t, counting, 2, "POST after a nonce rotation")
	if answer.BodyBytes != len(payload) {
		t.Fatalf("body_bytes = %d, want %d", answer.BodyBytes, len(payload))
	}
	answer = call(t, httpClient, http.MethodPut, url, strings.NewReader("small"))
	requireTrips(t, counting, 1, "PUT with the remembered nonce")
	if answer.Method != "PUT" || answer.BodyBytes != 5 {
		t.Fatalf("answer = %+v", answer)
	}
}

func TestTransportRetriesExactlyOnceAfterRotation(t *testing.T) {
	client := dial(t)
	counting := newCounting()
	httpClient := &http.Client{Transport: client.Transport(env(t, "DEMO_TENANT"), env(t, "DEMO_TARGET"), counting)}
	url := env(t, "DEMO_API_URL") + "rotation"
	call(t, httpClient, http.MethodGet, url, nil)
	counting.take()
	for i := 0; i < 3; i++ {
		rotateNonce(t)
		before := stats(t)
		call(t, httpClient, http.MethodGet, url, nil)
		requireTrips(t, counting, 2, "GET after a rotation")
		after := stats(t)
		if after.NonceChallenges-before.NonceChallenges != 1 || after.Accepted-before.Accepted != 1 {
			t.Fatalf("stats moved from %+v to %+v, want one challenge and one acceptance", before, after)
		}
	}
}

func TestTransportBearerTarget(t *testing.T) {
	client := dial(t)
	counting := newCounting()
	httpClient := &http.Client{Transport: client.Transport(env(t, "DEMO_TENANT"), env(t, "DEMO_BEARER_TARGET"), counting)}
	answer := call(t, httpClient, http.MethodGet, env(t, "DEMO_BEARER_URL")+"items", nil)
	header := requireTrips(t, counting, 1, "bearer GET")
	if answer.TokenType != "Bearer" {
		t.Fatalf("token_type = %q, want Bearer", answer.TokenType)
	}
	if !strings.HasPrefix(header.Get("Authorization"), "Bearer ") || header.Get("DPoP") != "" {
		t.Fatalf("sent Authorization %q, DPoP %q", header.Get("Authorization"), header.Get("DPoP"))
	}
}

func TestTokenSourceWithOAuth2Client(t *testing.T) {
	client := dial(t)
	source := client.TokenSource(testContext(t), env(t, "DEMO_TENANT"), env(t, "DEMO_BEARER_TARGET"))
	defer source.Close()
	var _ oauth2.TokenSource = source
	answer := call(t, oauth2.NewClient(testContext(t), source), http.MethodGet, env(t, "DEMO_BEARER_URL")+"x", nil)
	if answer.TokenType != "Bearer" {
		t.Fatalf("token_type = %q", answer.TokenType)
	}
}

func TestErrorsCarryTheReason(t *testing.T) {
	client := dial(t)
	httpClient := &http.Client{Transport: client.Transport("nope", env(t, "DEMO_TARGET"), nil)}
	_, err := httpClient.Get(env(t, "DEMO_API_URL"))
	requireReason(t, err, codes.NotFound, "TENANT_NOT_FOUND")

	httpClient = client.HTTPClient(env(t, "DEMO_TENANT"), env(t, "DEMO_TARGET"))
	_, err = httpClient.Get("https://elsewhere.invalid/records")
	requireReason(t, err, codes.PermissionDenied, "URL_NOT_ALLOWED")

	source := client.TokenSource(testContext(t), "nope", env(t, "DEMO_TARGET"),
		broker.WithBackoff(50*time.Millisecond, time.Second))
	defer source.Close()
	_, err = source.Token()
	requireReason(t, err, codes.NotFound, "TENANT_NOT_FOUND")
}

func requireReason(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	var e *broker.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is no *broker.Error", err, err)
	}
	if e.Reason != reason || e.Code != code {
		t.Fatalf("error = %s / %s, want %s / %s", e.Code, e.Reason, code, reason)
	}
	if status.Code(e) != code {
		t.Fatalf("status.Code = %s", status.Code(e))
	}
}

func TestTokenSourceRenewsWithoutRPCPerRead(t *testing.T) {
	var counter rpcCounter
	client := dial(t, counter.options())
	source := client.TokenSource(testContext(t), env(t, "DEMO_TENANT"), env(t, "DEMO_TARGET"))
	defer source.Close()
	if err := source.Wait(testContext(t)); err != nil {
		t.Fatalf("no token from the stream: %v", err)
	}
	first, err := source.Token()
	if err != nil {
		t.Fatal(err)
	}
	if first.TokenType != "DPoP" || first.AccessToken == "" || !first.Expiry.After(time.Now()) {
		t.Fatalf("token = %+v", first)
	}
	// The demo's tokens live 20 s and are renewed at about half their life.
	deadline := time.Now().Add(30 * time.Second)
	reads := 0
	for {
		token, err := source.Token()
		if err != nil {
			t.Fatal(err)
		}
		reads++
		if token.AccessToken != first.AccessToken {
			if !token.Expiry.After(first.Expiry) {
				t.Fatalf("the renewed token expires at %v, not after %v", token.Expiry, first.Expiry)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token did not change within 30 s (%d reads)", reads)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if unary := counter.unary.Load(); unary != 0 {
		t.Fatalf("%d unary RPCs for %d reads, want 0: the stream feeds the cache", unary, reads)
	}
	if streams := counter.streams.Load(); streams != 1 {
		t.Fatalf("%d WatchToken streams, want 1", streams)
	}
	t.Logf("renewal seen after %d reads, 0 unary RPCs, 1 stream", reads)
}

func TestGeneratedStubStillWorks(t *testing.T) {
	client := dial(t)
	resp, err := client.Broker.AuthorizeRequest(testContext(t), &brokerv1.AuthorizeRequestRequest{
		Tenant: env(t, "DEMO_TENANT"), Target: env(t, "DEMO_TARGET"), HttpMethod: "GET", Url: env(t, "DEMO_API_URL"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTokenType() != brokerv1.TokenType_TOKEN_TYPE_DPOP || resp.GetDpop() == "" {
		t.Fatalf("answer = %v", resp)
	}
	_, err = client.Broker.GetToken(testContext(t), &brokerv1.GetTokenRequest{Tenant: "nope", Target: "x"})
	if info := broker.ErrorInfo(err); info == nil || info.GetReason() != "TENANT_NOT_FOUND" {
		t.Fatalf("ErrorInfo = %v for %v", info, err)
	}
}

func TestDialReadsTheEnvironment(t *testing.T) {
	client := dial(t)
	if client.Address != env(t, broker.EnvAddress) {
		t.Fatalf("Address = %q", client.Address)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Broker.GetBrokerInfo(ctx, &brokerv1.GetBrokerInfoRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestTransportInsufficientAuthorizationDetailsIsTyped(t *testing.T) {
	client := dial(t)
	counting := newCounting()
	httpClient := &http.Client{Transport: client.Transport(env(t, "DEMO_TENANT"), env(t, "DEMO_TARGET"), counting)}
	// The tenant's client-credentials tokens never carry the attest: the demo API's attest/ paths refuse them.
	resp, err := httpClient.Get(env(t, "DEMO_API_URL") + "attest/records")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("answer %s, want an error", resp.Status)
	}
	requireReason(t, err, codes.PermissionDenied, broker.ReasonInsufficientAuthorizationDetails)
	e := broker.AsError(err)
	if !strings.Contains(e.Message, "care context") || !strings.Contains(e.Message, "attest") ||
		e.Metadata["http_status"] != "403" || e.Metadata["scheme"] != "DPoP" {
		t.Fatalf("error = %q, metadata %v", e.Message, e.Metadata)
	}
	if trips, _ := counting.take(); trips < 1 || trips > 2 {
		t.Fatalf("%d round trips, want 1 or 2 (a nonce retry at most)", trips)
	}
	// Other paths of the same API still answer through the same transport.
	call(t, httpClient, http.MethodGet, env(t, "DEMO_API_URL")+"records/1", nil)
}
