package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/helseid-broker/helseid-broker/clients/go/brokerv1"
)

// The environment variables Dial reads.
const (
	// EnvAddress names the broker's address (host:port); DefaultAddress when unset.
	EnvAddress = "HELSEID_BROKER_ADDR"
	// EnvCredential names the caller's credential, sent as "authorization: Bearer <credential>".
	EnvCredential = "HELSEID_BROKER_CREDENTIAL"
	// DefaultAddress is the broker's address when neither WithAddress nor HELSEID_BROKER_ADDR names one.
	DefaultAddress = "127.0.0.1:50051"
)

// Client is a connection to the broker: Broker is the generated stub, and the methods build the helpers.
// It is safe for concurrent use; Close it when done.
type Client struct {
	// Broker is the generated TokenBrokerService stub on Conn, for the RPCs no helper covers.
	Broker brokerv1.TokenBrokerServiceClient
	// Conn is the gRPC connection.
	Conn *grpc.ClientConn
	// Address is the address dialled.
	Address string
}

// Close closes the connection.
func (c *Client) Close() error { return c.Conn.Close() }

// DialOption configures Dial.
type DialOption func(*dialConfig)

type dialConfig struct {
	address       string
	credential    string
	hasCredential bool
	tls           *tls.Config
	transport     credentials.TransportCredentials
	plaintext     bool
	grpcOptions   []grpc.DialOption
}

// WithAddress dials addr (host:port, or any gRPC target such as dns:///broker:50051) instead of
// HELSEID_BROKER_ADDR.
func WithAddress(addr string) DialOption { return func(c *dialConfig) { c.address = addr } }

// WithCredential sends credential as the caller's credential instead of HELSEID_BROKER_CREDENTIAL; an
// empty credential sends none.
func WithCredential(credential string) DialOption {
	return func(c *dialConfig) { c.credential, c.hasCredential = credential, true }
}

// WithTLS dials with TLS using cfg (server roots, a client certificate for mutual TLS, ...). A nil cfg
// means the system's roots.
func WithTLS(cfg *tls.Config) DialOption {
	return func(c *dialConfig) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.tls, c.transport, c.plaintext = cfg, nil, false
	}
}

// WithTransportCredentials dials with creds (such as credentials.NewTLS or an ALTS or SPIFFE provider).
func WithTransportCredentials(creds credentials.TransportCredentials) DialOption {
	return func(c *dialConfig) { c.transport, c.tls, c.plaintext = creds, nil, false }
}

// WithPlaintext dials without TLS even when the address is not a loopback address (a sidecar or mesh
// encrypts the hop). A caller credential is still refused over plaintext off the machine: see
// CallerCredential.
func WithPlaintext() DialOption {
	return func(c *dialConfig) { c.plaintext, c.tls, c.transport = true, nil, nil }
}

// WithGRPCOptions adds gRPC dial options (interceptors, keepalive, a service config, ...).
func WithGRPCOptions(opts ...grpc.DialOption) DialOption {
	return func(c *dialConfig) { c.grpcOptions = append(c.grpcOptions, opts...) }
}

// Dial returns a Client for the broker at HELSEID_BROKER_ADDR (or WithAddress; 127.0.0.1:50051 when
// neither names one), sending HELSEID_BROKER_CREDENTIAL (or WithCredential) as the caller's credential.
//
// Transport security: plaintext to a loopback address, TLS with the system's roots to any other, unless
// WithTLS, WithTransportCredentials or WithPlaintext says otherwise. A credential is never sent in plaintext
// off the machine (Dial fails instead).
//
// The connection is made lazily and re-made after a failure, like grpc.NewClient. When ctx has a deadline,
// Dial also connects at once and waits (until that deadline) for the connection to be ready.
func Dial(ctx context.Context, opts ...DialOption) (*Client, error) {
	cfg := dialConfig{address: os.Getenv(EnvAddress)}
	cfg.credential, cfg.hasCredential = os.LookupEnv(EnvCredential)
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.address == "" {
		cfg.address = DefaultAddress
	}
	loopback := IsLoopback(cfg.address)

	var transport credentials.TransportCredentials
	switch {
	case cfg.transport != nil:
		transport = cfg.transport
	case cfg.tls != nil:
		transport = credentials.NewTLS(cfg.tls)
	case cfg.plaintext || loopback:
		transport = insecure.NewCredentials()
	default:
		transport = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	dialOptions := []grpc.DialOption{grpc.WithTransportCredentials(transport)}
	if cfg.credential != "" {
		if transport.Info().SecurityProtocol == "insecure" && !loopback {
			return nil, fmt.Errorf("broker: refusing to send the caller credential in plaintext to %s "+
				"(not a loopback address): dial with TLS", cfg.address)
		}
		dialOptions = append(dialOptions, grpc.WithPerRPCCredentials(CallerCredential(cfg.credential, cfg.address)))
	}
	dialOptions = append(dialOptions, grpc.WithUserAgent("helseid-broker-go/"+Version))
	dialOptions = append(dialOptions, cfg.grpcOptions...)

	conn, err := grpc.NewClient(cfg.address, dialOptions...)
	if err != nil {
		return nil, fmt.Errorf("broker: dial %s: %w", cfg.address, err)
	}
	if _, ok := ctx.Deadline(); ok {
		if err := waitReady(ctx, conn); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("broker: dial %s: %w", cfg.address, err)
		}
	}
	return &Client{Broker: brokerv1.NewTokenBrokerServiceClient(conn), Conn: conn, Address: cfg.address}, nil
}

func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		state := conn.GetState()
		if state == connectivity.Ready {
			return nil
		}
		if !conn.WaitForStateChange(ctx, state) {
			return fmt.Errorf("not ready (%s): %w", state, ctx.Err())
		}
	}
}

// callerCredential sends the caller's credential as gRPC metadata "authorization: Bearer <credential>".
type callerCredential struct {
	header          string
	requireSecurity bool
}

// CallerCredential returns the caller's credential as credentials.PerRPCCredentials for grpc.NewClient
// (Dial uses it): metadata "authorization: Bearer <credential>". It requires transport security unless
// address is a loopback address, so gRPC refuses to send it in plaintext off the machine.
func CallerCredential(credential, address string) credentials.PerRPCCredentials {
	return callerCredential{header: "Bearer " + credential, requireSecurity: !IsLoopback(address)}
}

func (c callerCredential) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": c.header}, nil
}

func (c callerCredential) RequireTransportSecurity() bool { return c.requireSecurity }

// IsLoopback reports whether a gRPC target (host:port, a dns:/// or passthrough:/// target, a unix socket)
// stays on this machine: localhost, 127.0.0.0/8, ::1 or a unix socket.
func IsLoopback(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	for _, scheme := range []string{"dns:///", "passthrough:///", "dns:", "passthrough:"} {
		if strings.HasPrefix(target, scheme) {
			target = strings.TrimPrefix(target, scheme)
			break
		}
	}
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var errClosed = errors.New("broker: token source closed")
