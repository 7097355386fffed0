"""The Go client (clients/go, module github.com/helseid-broker/helseid-broker/clients/go) against a broker.

Its own tests (`go test ./...`) run against the demo broker's environment variables: the DPoP nonce retry,
the bearer target, typed errors and a token renewal seen through the local cache, plus unit tests against an
in-process fake broker. The benchmarks run a few iterations each, so they keep compiling and working (no
timed assertion). A consumer module in a fresh folder requires the client the ordinary way (`require` with
a `replace` to this checkout's clients/go, as before a release tag exists), is built with `go 1.22.0`, and
fetches the demo API through the client's http.RoundTripper.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from tests.clients.runner import ROOT, DemoBroker, run_checked

CLIENT = ROOT / "clients" / "go"
MODULE = "github.com/helseid-broker/helseid-broker/clients/go"
# The first run on a fresh machine downloads grpc-go and its dependencies from the module proxy.
GO_TIMEOUT_S = 900


def test_go_client_passes_against_broker(demo_broker: DemoBroker) -> None:
    run_checked(["go", "vet", "./..."], cwd=CLIENT, timeout_s=GO_TIMEOUT_S)
    result = run_checked(["go", "test", "-count=1", "-v", "./..."], cwd=CLIENT, env=demo_broker.env,
                         timeout_s=GO_TIMEOUT_S)  # fmt: skip
    passed = re.findall(r"^--- PASS: (\S+)", result.stdout, re.MULTILINE)
    failed = re.findall(r"^--- FAIL: (\S+)", result.stdout, re.MULTILINE)
    print(f"go test: {len(passed)} passed, {len(failed)} failed")
    assert not failed, result.stdout[-4000:]
    assert len(passed) >= 15, result.stdout[-4000:]
    assert "TestTokenSourceRenewsWithoutRPCPerRead" in passed
    assert "TestTransportGetRetriesOnceForNonceThenNotAgain" in passed


def test_go_benchmarks_run(demo_broker: DemoBroker) -> None:
    result = run_checked(
        ["go", "test", "-count=1", "-run", "^$", "-bench", ".", "-benchtime", "50x", "."],
        cwd=CLIENT,
        env=demo_broker.env,
        timeout_s=GO_TIMEOUT_S,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("Benchmark")]
    print("\n".join(lines))
    names = {line.split()[0].rsplit("-", 1)[0] for line in lines}
    assert names == {"BenchmarkTokenSource", "BenchmarkTransport", "BenchmarkByHand"}, result.stdout


CONSUMER_MAIN = """
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	broker "github.com/helseid-broker/helseid-broker/clients/go"
)

func main() {
	client, err := broker.Dial(context.Background()) // HELSEID_BROKER_ADDR, HELSEID_BROKER_CREDENTIAL
	if err != nil {
		panic(err)
	}
	defer client.Close()
	api := client.HTTPClient(os.Getenv("DEMO_TENANT"), os.Getenv("DEMO_TARGET"))
	resp, err := api.Post(os.Getenv("DEMO_API_URL")+"patients/1", "application/json", nil)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	fmt.Println(string(body))

	_, err = client.HTTPClient("nope", "demo-api").Get(os.Getenv("DEMO_API_URL"))
	var e *broker.Error
	fmt.Println(errors.As(err, &e), e.Reason, broker.Version)
}
"""


def test_go_consumer_module_calls_the_demo_api(demo_broker: DemoBroker, tmp_path: Path) -> None:
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "go.mod").write_text(
        textwrap.dedent(f"""\
            module example.com/consumer

            go 1.22.0

            require {MODULE} v1.0.0

            replace {MODULE} => {CLIENT}
            """)
    )
    (consumer / "main.go").write_text(textwrap.dedent(CONSUMER_MAIN).lstrip())
    run_checked(["go", "mod", "tidy"], cwd=consumer, timeout_s=GO_TIMEOUT_S)
    assert "go 1.22.0" in (consumer / "go.mod").read_text(), "the client raised its consumer's go line"
    result = run_checked(["go", "run", "."], cwd=consumer, env=demo_broker.env, timeout_s=GO_TIMEOUT_S)
    lines = result.stdout.splitlines()
    print(lines[0])
    assert lines[0] == "200", result.stdout
    assert '"token_type": "DPoP"' in lines[1] or '"token_type":"DPoP"' in lines[1], lines[1]
    assert lines[2] == "true TENANT_NOT_FOUND 1.0.0", result.stdout
