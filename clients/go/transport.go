package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helseid-broker/helseid-broker/clients/go/brokerv1"
)

// Transport is an http.RoundTripper that authorizes each request through the broker: it calls
// AuthorizeRequest (or AuthorizeSessionRequest when SessionID is set) with the request's method, absolute
// URL and the last DPoP nonce seen from the URL's origin, and sets Authorization, DPoP and every header the
// broker renders for the target's API (from a CareContext given with WithCareContext). When the resource
// server answers 401 or 400 with a DPoP challenge error="use_dpop_nonce" and a DPoP-Nonce header, it
// sends the request once more with a proof carrying that nonce (a body is replayed through GetBody, or
// buffered). It remembers the last DPoP-Nonce each origin sent, from any answer, so later requests take
// one round trip. A 403 whose DPoP or Bearer challenge says error="insufficient_authorization_details" (an
// API that wants the trust framework's attest in the token) becomes an *Error with Reason
// ReasonInsufficientAuthorizationDetails; any other answer, 403s included, is returned as it is.
//
// The zero value with Broker, Tenant and Target set is ready to use; it is safe for concurrent use.
// Errors from the broker are *Error (http.Client wraps them in a *url.Error; errors.As finds them).
type Transport struct {
	// Base sends the requests; http.DefaultTransport when nil.
	Base http.RoundTripper
	// Broker is the broker's stub.
	Broker brokerv1.TokenBrokerServiceClient
	// Tenant and Target name the token, as configured in the broker.
	Tenant, Target string
	// SessionID, when set, authorizes with the user session's token (AuthorizeSessionRequest) instead of
	// the tenant's; Tenant is then unused.
	SessionID string

	mu     sync.RWMutex
	nonces map[string]string // origin -> last DPoP-Nonce
}

// maxOrigins bounds the nonce memory; past it, the memory starts over.
const maxOrigins = 1024

// Transport returns a Transport for (tenant, target) on this client's connection, over base (nil for
// http.DefaultTransport).
func (c *Client) Transport(tenant, target string, base http.RoundTripper) *Transport {
	return &Transport{Base: base, Broker: c.Broker, Tenant: tenant, Target: target}
}

// SessionTransport returns a Transport that authorizes with a user session's token for target.
func (c *Client) SessionTransport(sessionID, target string, base http.RoundTripper) *Transport {
	return &Transport{Base: base, Broker: c.Broker, SessionID: sessionID, Target: target}
}

// HTTPClient returns an http.Client whose Transport authorizes every request for (tenant, target).
func (c *Client) HTTPClient(tenant, target string) *http.Client {
	return &http.Client{Transport: c.Transport(tenant, target, nil)}
}

type careContextKey struct{}

// WithCareContext returns a context that makes Transport send cc with the request made with it
// (req.WithContext): the broker renders the headers the target's API wants from it.
func WithCareContext(ctx context.Context, cc *brokerv1.CareContext) context.Context {
	return context.WithValue(ctx, careContextKey{}, cc)
}

// CareContextFrom returns the CareContext WithCareContext put into ctx, or nil.
func CareContextFrom(ctx context.Context) *brokerv1.CareContext {
	cc, _ := ctx.Value(careContextKey{}).(*brokerv1.CareContext)
	return cc
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || !req.URL.IsAbs() {
		closeBody(req)
		return nil, errors.New("broker: Transport needs an absolute URL")
	}
	body, getBody, size, err := replayable(req)
	if err != nil {
		return nil, err
	}
	origin := originOf(req.URL)
	resp, proof, err := t.send(req, body, getBody, size, origin, t.nonce(origin))
	if err != nil || proof == "" {
		return refuseInsufficient(resp, err)
	}
	nonce, retry := nonceChallenge(resp)
	if !retry {
		return refuseInsufficient(resp, nil)
	}
	// One retry with the nonce the server asked for.
	if getBody != nil {
		if body, err = getBody(); err != nil {
			return resp, nil // the body cannot be replayed: hand the challenge to the caller
		}
	}
	drain(resp)
	resp, _, err = t.send(req, body, getBody, size, origin, nonce)
	return refuseInsufficient(resp, err)
}

// ReasonInsufficientAuthorizationDetails is the Reason of the *Error that Transport returns when the
// resource server answers 403 with a DPoP or Bearer challenge error="insufficient_authorization_details":
// the API wants the trust framework's attest in the token, which only a session token made with a care
// context has.
const ReasonInsufficientAuthorizationDetails = "INSUFFICIENT_AUTHORIZATION_DETAILS"

const insufficientAuthorizationDetails = "insufficient_authorization_details"

// refuseInsufficient turns a 403 insufficient_authorization_details answer into an *Error (its body
// drained and closed); any other answer or error passes unchanged.
func refuseInsufficient(resp *http.Response, err error) (*http.Response, error) {
	if err != nil || resp == nil {
		return resp, err
	}
	ch := insufficientChallenge(resp)
	if ch == nil {
		return resp, nil
	}
	drain(resp)
	return nil, insufficientError(ch, resp)
}

// insufficientChallenge returns the DPoP or Bearer challenge with error="insufficient_authorization_details"
// of a 403 answer (as NHN's APIs send it), or nil.
func insufficientChallenge(resp *http.Response) *challenge {
	if resp.StatusCode != http.StatusForbidden {
		return nil
	}
	for _, value := range resp.Header.Values("WWW-Authenticate") {
		for _, ch := range parseChallenges(value) {
			if (strings.EqualFold(ch.scheme, "DPoP") || strings.EqualFold(ch.scheme, "Bearer")) &&
				ch.params["error"] == insufficientAuthorizationDetails {
				return ch
			}
		}
	}
	return nil
}

func insufficientError(ch *challenge, resp *http.Response) *Error {
	msg := "the resource server answered 403 " + insufficientAuthorizationDetails + ": the request needs a " +
		"care context with the trust framework's attest; authorize it with a session token made with a care " +
		"context (GetSessionToken or AuthorizeSessionRequest with care_context: SessionTransport and " +
		"WithCareContext)"
	metadata := map[string]string{"http_status": "403", "scheme": ch.scheme, "error": insufficientAuthorizationDetails}
	if resp.Request != nil && resp.Request.URL != nil {
		metadata["origin"] = originOf(resp.Request.URL)
	}
	if d := ch.params["error_description"]; d != "" {
		metadata["error_description"] = d
		msg += " (the server said: " + d + ")"
	}
	st := status.New(codes.PermissionDenied, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain,
		Reason: ReasonInsufficientAuthorizationDetails, Metadata: metadata}); err == nil {
		st = withInfo
	}
	return &Error{Code: codes.PermissionDenied, Reason: ReasonInsufficientAuthorizationDetails, Message: msg,
		Metadata: metadata, status: st}
}

// send authorizes one attempt of req with nonce and sends it; proof is the DPoP header it carried.
func (t *Transport) send(req *http.Request, body io.ReadCloser, getBody func() (io.ReadCloser, error),
	size int64, origin, nonce string) (*http.Response, string, error) {
	auth, err := t.authorize(req, nonce)
	if err != nil {
		if body != nil {
			_ = body.Close()
		}
		return nil, "", err
	}
	out := req.Clone(req.Context())
	out.Body, out.GetBody, out.ContentLength = body, getBody, size
	if body == nil && req.Body != nil {
		out.Body = http.NoBody
	}
	out.Header.Set("Authorization", auth.GetAuthorization())
	if dpop := auth.GetDpop(); dpop != "" {
		out.Header.Set("DPoP", dpop)
	} else {
		out.Header.Del("DPoP")
	}
	for _, h := range auth.GetHeaders() {
		out.Header.Set(h.GetName(), h.GetValue())
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(out)
	if err != nil {
		return nil, "", err
	}
	if fresh := resp.Header.Get("DPoP-Nonce"); fresh != "" {
		t.remember(origin, fresh)
	}
	return resp, auth.GetDpop(), nil
}

// authorization is what AuthorizeRequest and AuthorizeSessionRequest have in common.
type authorization interface {
	GetAuthorization() string
	GetDpop() string
	GetHeaders() []*brokerv1.HttpHeader
}

func (t *Transport) authorize(req *http.Request, nonce string) (authorization, error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	ctx := req.Context()
	cc := CareContextFrom(ctx)
	var auth authorization
	var err error
	if t.SessionID != "" {
		auth, err = t.Broker.AuthorizeSessionRequest(ctx, &brokerv1.AuthorizeSessionRequestRequest{
			SessionId: t.SessionID, Target: t.Target, HttpMethod: method, Url: req.URL.String(),
			DpopNonce: nonce, CareContext: cc,
		})
	} else {
		auth, err = t.Broker.AuthorizeRequest(ctx, &brokerv1.AuthorizeRequestRequest{
			Tenant: t.Tenant, Target: t.Target, HttpMethod: method, Url: req.URL.String(),
			DpopNonce: nonce, CareContext: cc,
		})
	}
	if err != nil {
		return nil, wrapError(err)
	}
	return auth, nil
}

// Nonce returns the last DPoP-Nonce seen from the origin of u ("" when none).
func (t *Transport) Nonce(u *url.URL) string { return t.nonce(originOf(u)) }

func (t *Transport) nonce(origin string) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.nonces[origin]
}

func (t *Transport) remember(origin, nonce string) {
	if t.nonce(origin) == nonce {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nonces == nil || len(t.nonces) >= maxOrigins {
		t.nonces = make(map[string]string)
	}
	t.nonces[origin] = nonce
}

// replayable returns the body of the first attempt, a function giving it again for the retry (the
// request's GetBody when it has one, else the body read into memory) and its length.
func replayable(req *http.Request) (io.ReadCloser, func() (io.ReadCloser, error), int64, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil, req.ContentLength, nil
	}
	if req.GetBody != nil {
		return req.Body, req.GetBody, req.ContentLength, nil
	}
	data, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, nil, 0, err
	}
	getBody := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	body, _ := getBody()
	return body, getBody, int64(len(data)), nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// drain reads a little of a response's body and closes it, so the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// originOf returns scheme://host[:port] of u, lower case, without the scheme's default port.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Host)
	if (scheme == "https" && strings.HasSuffix(host, ":443")) || (scheme == "http" && strings.HasSuffix(host, ":80")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return scheme + "://" + host
}

// nonceChallenge reports whether resp asks for a DPoP nonce (RFC 9449 section 9): status 401 or 400, a
// DPoP challenge with error="use_dpop_nonce" in WWW-Authenticate and a DPoP-Nonce header, which it returns.
func nonceChallenge(resp *http.Response) (string, bool) {
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest {
		return "", false
	}
	nonce := resp.Header.Get("DPoP-Nonce")
	if nonce == "" {
		return "", false
	}
	for _, value := range resp.Header.Values("WWW-Authenticate") {
		for _, ch := range parseChallenges(value) {
			if strings.EqualFold(ch.scheme, "DPoP") && ch.params["error"] == "use_dpop_nonce" {
				return nonce, true
			}
		}
	}
	// RFC 9449 section 8: an authorization server says so in a JSON body of a 400; a resource server in
	// the header. Without the header, the caller gets the answer as it is.
	return "", false
}

type challenge struct {
	scheme string
	params map[string]string
}

// parseChallenges parses a WWW-Authenticate value (RFC 9110 section 11.6.1) into its challenges: each a
// scheme with its auth-params (names in lower case); a token68 is skipped.
func parseChallenges(s string) []*challenge {
	var out []*challenge
	var cur *challenge
	i := 0
	isTokenChar := func(c byte) bool { return c != ' ' && c != '\t' && c != ',' && c != '=' && c != '"' }
	skipSpace := func(j int) int {
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		return j
	}
	for i < len(s) {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++
		}
		start := i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		tok := s[start:i]
		if tok == "" {
			if i < len(s) {
				i++ // a stray '=' or '"'
			}
			continue
		}
		j := skipSpace(i)
		if j >= len(s) || s[j] != '=' {
			cur = &challenge{scheme: tok, params: map[string]string{}}
			out = append(out, cur)
			i = j
			continue
		}
		j = skipSpace(j + 1)
		if j >= len(s) || s[j] == '=' || s[j] == ',' {
			for j < len(s) && s[j] == '=' { // token68 padding
				j++
			}
			i = j
			continue
		}
		var value string
		if s[j] == '"' {
			var b strings.Builder
			j++
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
				j++
			}
			value = b.String()
			j++ // the closing quote
		} else {
			vs := j
			for j < len(s) && isTokenChar(s[j]) {
				j++
			}
			value = s[vs:j]
		}
		if cur != nil {
			cur.params[strings.ToLower(tok)] = value
		}
		i = j
	}
	return out
}
