package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	broker "github.com/helseid-broker/helseid-broker/clients/go"
)

// The README's ten-line example: the demo API through the Transport. (Compiled, not run: it has no Output.)
func Example() {
	ctx := context.Background()
	client, err := broker.Dial(ctx) // HELSEID_BROKER_ADDR, HELSEID_BROKER_CREDENTIAL
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	api := client.HTTPClient("demo", "demo-api") // AuthorizeRequest per request, one DPoP nonce retry
	resp, err := api.Get(os.Getenv("DEMO_API_URL") + "patients/1")
	var e *broker.Error
	if errors.As(err, &e) {
		log.Fatalf("the broker said %s (retry after %s)", e.Reason, e.RetryDelay)
	} else if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
}

// A token held in memory, fed by WatchToken: Token() makes no RPC while the token is valid.
func ExampleClient_TokenSource() {
	ctx := context.Background()
	client, err := broker.Dial(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	source := client.TokenSource(ctx, "demo", "demo-bearer") // an oauth2.TokenSource
	defer source.Close()
	token, err := source.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(token.TokenType, token.Expiry)
}
