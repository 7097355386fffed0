package broker_test

// Benchmarks against the broker and demo API named by the environment (see env_test.go):
//
//	go test -run '^$' -bench . -benchtime 3s
//
// BenchmarkTokenSource: a cached token through the TokenSource (no RPC). BenchmarkTransport: GET requests to
// the demo API through Transport (one AuthorizeRequest per request, nonce remembered). BenchmarkByHand: the
// same requests with AuthorizeRequest called directly on the stub and the nonce kept by hand: the
// difference is the Transport's overhead.

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/helseid-broker/helseid-broker/clients/go/brokerv1"
)

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

func BenchmarkTokenSource(b *testing.B) {
	client := dial(b)
	source := client.TokenSource(context.Background(), env(b, "DEMO_TENANT"), env(b, "DEMO_TARGET"))
	defer source.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := source.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := source.Token(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, "calls/s")
}

func benchTransport() *http.Transport {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 16
	return base
}

func consume(b *testing.B, resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %s", resp.Status)
	}
}

func BenchmarkTransport(b *testing.B) {
	client := dial(b)
	httpClient := &http.Client{Transport: client.Transport(env(b, "DEMO_TENANT"), env(b, "DEMO_TARGET"), benchTransport())}
	url := env(b, "DEMO_API_URL") + "bench"
	resp, err := httpClient.Get(url) // learns the nonce
	if err != nil {
		b.Fatal(err)
	}
	consume(b, resp)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := httpClient.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		consume(b, resp)
	}
	b.StopTimer()
	reportRate(b, "req/s")
}

func BenchmarkByHand(b *testing.B) {
	client := dial(b)
	httpClient := &http.Client{Transport: benchTransport()}
	tenant, target, url := env(b, "DEMO_TENANT"), env(b, "DEMO_TARGET"), env(b, "DEMO_API_URL")+"bench"
	nonce := ""
	send := func() *http.Response {
		auth, err := client.Broker.AuthorizeRequest(context.Background(), &brokerv1.AuthorizeRequestRequest{
			Tenant: tenant, Target: target, HttpMethod: http.MethodGet, Url: url, DpopNonce: nonce,
		})
		if err != nil {
			b.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", auth.GetAuthorization())
		req.Header.Set("DPoP", auth.GetDpop())
		resp, err := httpClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if fresh := resp.Header.Get("DPoP-Nonce"); fresh != "" {
			nonce = fresh
		}
		return resp
	}
	resp := send() // learns the nonce
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		consume(b, send())
	}
	b.StopTimer()
	reportRate(b, "req/s")
}
