package broker

import (
	"context"
	"errors"
	"io"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/helseid-broker/helseid-broker/clients/go/brokerv1"
)

// TokenSourceOption configures a TokenSource.
type TokenSourceOption func(*TokenSource)

// WithExpirySkew sets how long before its expire_time a token is no longer handed out (default 5 s).
func WithExpirySkew(d time.Duration) TokenSourceOption { return func(s *TokenSource) { s.skew = d } }

// WithBackoff sets the first and the longest wait between two WatchToken connections (default 0.5 s and
// 30 s; the wait doubles after each failed connection, with jitter, and a broker's RetryInfo is honoured).
func WithBackoff(initial, max time.Duration) TokenSourceOption {
	return func(s *TokenSource) { s.backoffInitial, s.backoffMax = initial, max }
}

// WithCallTimeout bounds each GetToken fallback call (default 10 s).
func WithCallTimeout(d time.Duration) TokenSourceOption {
	return func(s *TokenSource) { s.callTimeout = d }
}

// TokenSource holds the access token of one (tenant, target) pair in memory. A goroutine watches the
// broker (WatchToken) and replaces the token at each renewal, reconnecting with back-off when the stream
// breaks; while it is down and the held token has expired, Token falls back to GetToken. A token is never
// handed out later than its expire_time minus the skew.
//
// Token makes no RPC while it holds a valid token: that is the point. TokenSource implements
// oauth2.TokenSource. Note that a DPoP-bound token (TokenType "DPoP") is useless without a proof for each
// request: use Transport for those; TokenSource suits bearer targets and callers that want the token
// itself. It is safe for concurrent use. Close it to end the stream.
type TokenSource struct {
	stub           brokerv1.TokenBrokerServiceClient
	tenant, target string
	skew           time.Duration
	backoffInitial time.Duration
	backoffMax     time.Duration
	callTimeout    time.Duration

	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	current atomic.Pointer[heldToken]
	fetch   sync.Mutex // one GetToken fallback at a time
	first   chan struct{}
	once    sync.Once

	streams   atomic.Int64 // WatchToken streams opened
	fallbacks atomic.Int64 // GetToken calls made
}

type heldToken struct {
	token  *oauth2.Token
	proto  *brokerv1.AccessToken
	expire time.Time // expire_time
	until  time.Time // expire_time minus the skew
}

// TokenSource returns a TokenSource for (tenant, target) on this client's connection. It starts watching
// at once; ctx ends the watch (as does Close).
func (c *Client) TokenSource(ctx context.Context, tenant, target string, opts ...TokenSourceOption) *TokenSource {
	return NewTokenSource(ctx, c.Broker, tenant, target, opts...)
}

// NewTokenSource returns a TokenSource for (tenant, target) calling the broker through stub.
func NewTokenSource(ctx context.Context, stub brokerv1.TokenBrokerServiceClient, tenant, target string,
	opts ...TokenSourceOption) *TokenSource {
	s := &TokenSource{
		stub: stub, tenant: tenant, target: target,
		skew: 5 * time.Second, backoffInitial: 500 * time.Millisecond, backoffMax: 30 * time.Second,
		callTimeout: 10 * time.Second,
		done:        make(chan struct{}),
		first:       make(chan struct{}),
	}
	for _, opt := range opts {
		opt(s)
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	go s.watch()
	return s
}

// Token returns the held token, or fetches one with GetToken when none is valid. The returned token is
// shared: do not modify it.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	held, err := s.held()
	if err != nil {
		return nil, err
	}
	return held.token, nil
}

// AccessToken is Token with the broker's own message (scopes, audiences, DPoP key thumbprint, ...). The
// returned message is shared: do not modify it.
func (s *TokenSource) AccessToken() (*brokerv1.AccessToken, error) {
	held, err := s.held()
	if err != nil {
		return nil, err
	}
	return held.proto, nil
}

func (s *TokenSource) held() (*heldToken, error) {
	if held := s.current.Load(); held != nil && time.Now().Before(held.until) {
		return held, nil
	}
	return s.fallback()
}

// fallback calls GetToken (one call at a time: callers waiting meanwhile take its result).
func (s *TokenSource) fallback() (*heldToken, error) {
	s.fetch.Lock()
	defer s.fetch.Unlock()
	if held := s.current.Load(); held != nil && time.Now().Before(held.until) {
		return held, nil
	}
	if s.ctx.Err() != nil {
		return nil, errClosed
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.callTimeout)
	defer cancel()
	s.fallbacks.Add(1)
	// A token that outlives the skew, so that it can be handed out; when the target's tokens are too short
	// for that, whatever the broker holds.
	req := &brokerv1.GetTokenRequest{Tenant: s.tenant, Target: s.target,
		MinRemainingLifetime: durationpb.New(s.skew + time.Second)}
	resp, err := s.stub.GetToken(ctx, req)
	if e := AsError(err); e != nil && e.Reason == "LIFETIME_UNAVAILABLE" {
		s.fallbacks.Add(1)
		req.MinRemainingLifetime = nil
		resp, err = s.stub.GetToken(ctx, req)
	}
	if err != nil {
		return nil, wrapError(err)
	}
	held := s.store(resp.GetAccessToken())
	if !time.Now().Before(held.until) {
		return nil, &Error{Code: codes.FailedPrecondition, Reason: "LIFETIME_UNAVAILABLE",
			Message: "the broker's token expires within the skew; lower WithExpirySkew",
			status:  status.New(codes.FailedPrecondition, "token expires within the skew")}
	}
	return held, nil
}

// Wait blocks until the source holds a token from the stream or from a fallback, or ctx ends.
func (s *TokenSource) Wait(ctx context.Context) error {
	select {
	case <-s.first:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close ends the watch and waits for its goroutine. Token fails afterwards unless a held token is valid.
func (s *TokenSource) Close() {
	s.cancel()
	<-s.done
}

// Stats returns how many WatchToken streams the source opened and how many GetToken fallbacks it made.
func (s *TokenSource) Stats() (streams, fallbacks int64) { return s.streams.Load(), s.fallbacks.Load() }

// store holds t unless a token that expires later is already held; it returns what is held.
func (s *TokenSource) store(t *brokerv1.AccessToken) *heldToken {
	expire := t.GetExpireTime().AsTime()
	tokenType := "Bearer"
	if t.GetTokenType() == brokerv1.TokenType_TOKEN_TYPE_DPOP {
		tokenType = "DPoP"
	}
	next := &heldToken{
		token: &oauth2.Token{AccessToken: t.GetToken(), TokenType: tokenType, Expiry: expire},
		proto: t, expire: expire, until: expire.Add(-s.skew),
	}
	for {
		held := s.current.Load()
		if held != nil && !next.expire.After(held.expire) {
			return held
		}
		if s.current.CompareAndSwap(held, next) {
			s.once.Do(func() { close(s.first) })
			return next
		}
	}
}

// watch keeps a WatchToken stream open until the source is closed, reconnecting with back-off.
func (s *TokenSource) watch() {
	defer close(s.done)
	delay := s.backoffInitial
	for s.ctx.Err() == nil {
		received, err := s.watchOnce()
		if s.ctx.Err() != nil {
			return
		}
		if received {
			delay = s.backoffInitial // the stream worked: start over
		}
		wait := delay
		if e := AsError(err); e != nil && e.RetryDelay > wait {
			wait = e.RetryDelay
		} else if errors.Is(err, io.EOF) {
			wait = s.backoffInitial // the broker ended the stream cleanly (a restart): come back soon
		}
		// Full jitter over the upper half, so many clients of one broker do not reconnect in step.
		wait = wait/2 + time.Duration(rand.Int63n(int64(wait/2)+1))
		timer := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		delay = min(2*delay, s.backoffMax)
	}
}

// watchOnce reads one stream until it breaks; it reports whether a token arrived.
func (s *TokenSource) watchOnce() (bool, error) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	s.streams.Add(1)
	stream, err := s.stub.WatchToken(ctx, &brokerv1.WatchTokenRequest{Tenant: s.tenant, Target: s.target})
	if err != nil {
		return false, err
	}
	received := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			return received, err
		}
		received = true
		s.store(resp.GetAccessToken())
	}
}
