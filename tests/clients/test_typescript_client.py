"""The TypeScript client (clients/typescript, npm package @helseid-broker/client) against a running broker.

Its own tests (`npm test`: tsc, then `node --test`) run against the demo broker's environment variables. A
consumer project in a fresh folder installs the packed tarball (`npm pack`, then `npm install <tarball>`),
as a consumer installs it from a registry, runs an ESM script that calls the demo API through the fetch
wrapper, and type-checks a TypeScript file against the package's declared types.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.clients.runner import ROOT, DemoBroker, run_checked

CLIENT = ROOT / "clients" / "typescript"
# The first run on a fresh machine downloads the client's packages (grpc-js, protobuf, typescript, ...).
INSTALL_TIMEOUT_S = 900
NPM_QUIET = ["--no-audit", "--no-fund", "--loglevel=error"]


@pytest.fixture(scope="module")
def typescript_client() -> Path:
    """clients/typescript with its pinned packages installed: `npm ci`, skipped while node_modules was
    installed from the current package-lock.json (the same stamp scripts/generate-clients.sh keeps)."""
    stamp = CLIENT / "node_modules" / ".installed-lock.json"
    lock = CLIENT / "package-lock.json"
    if not stamp.exists() or stamp.read_bytes() != lock.read_bytes():
        run_checked(["npm", "ci", *NPM_QUIET], cwd=CLIENT, timeout_s=INSTALL_TIMEOUT_S)
        shutil.copyfile(lock, stamp)
    return CLIENT


def test_typescript_client_passes_against_broker(typescript_client: Path, demo_broker: DemoBroker) -> None:
    result = run_checked(["npm", "test", "--silent"], cwd=typescript_client, env=demo_broker.env)
    lines = result.stdout.splitlines()
    summary = [line for line in lines if line.startswith(("# tests", "# pass", "# fail"))]
    print(" ".join(summary))
    assert "# fail 0" in summary, result.stdout[-4000:]


CONSUMER_JS = """
import { createFetch, TokenSource, BrokerError, VERSION, tokenTypeToJSON } from "@helseid-broker/client";

const api = createFetch({ tenant: "demo", target: "demo-api" }); // broker from HELSEID_BROKER_ADDR
const response = await api(new URL("patients/1", process.env.DEMO_API_URL), { method: "POST", body: "{}" });
const answer = await response.json();
console.log(response.status, answer.token_type, answer.body_bytes);
api.close();

const source = new TokenSource({ tenant: "demo", target: "demo-bearer" });
console.log((await source.token()).length > 0, tokenTypeToJSON((await source.accessToken()).tokenType));
source.close();

const nope = createFetch({ tenant: "nope", target: "demo-api" });
await nope(process.env.DEMO_API_URL).catch((e) => console.log(e instanceof BrokerError, e.reason));
nope.close();
console.log(VERSION);
"""

CONSUMER_TS = """
import { type BrokerFetch, BrokerError, createFetch, TokenSource } from "@helseid-broker/client";

export async function call(url: string): Promise<number> {
  const api: BrokerFetch = createFetch({ tenant: "demo", target: "demo-api" });
  const source = new TokenSource({ tenant: "demo", target: "demo-api", skewMs: 1000 });
  const token: string = await source.token();
  const error: BrokerError | undefined = undefined;
  const response = await api(url, { method: "GET", careContext: { patientId: "x" } as never });
  return response.status + token.length + (error ? 1 : 0);
}
"""


def test_consumer_installs_the_packed_tarball_and_calls_the_demo_api(
    typescript_client: Path, demo_broker: DemoBroker, tmp_path: Path
) -> None:
    packed = run_checked(
        ["npm", "pack", "--json", "--pack-destination", str(tmp_path), *NPM_QUIET],
        cwd=typescript_client,
        timeout_s=INSTALL_TIMEOUT_S,
    )
    info = json.loads(packed.stdout[packed.stdout.index("[") :])[0]
    files = sorted(entry["path"] for entry in info["files"])
    for wanted in ("package.json", "README.md", "LICENSE", "dist/src/index.js", "dist/src/index.d.ts"):
        assert wanted in files
    unwanted = ("src/", "test/", "dist/test/", "bench/", "dist/bench/")
    assert not [f for f in files if f.startswith(unwanted)], files
    tarball = tmp_path / info["filename"]

    consumer = tmp_path / "consumer"
    consumer.mkdir()
    package = {"name": "consumer", "version": "0.0.0", "private": True, "type": "module"}
    (consumer / "package.json").write_text(json.dumps(package))
    run_checked(["npm", "install", str(tarball), *NPM_QUIET], cwd=consumer, timeout_s=INSTALL_TIMEOUT_S)
    (consumer / "main.js").write_text(textwrap.dedent(CONSUMER_JS))
    result = run_checked(["node", "main.js"], cwd=consumer, env=demo_broker.env, timeout_s=60)
    expected = "200 DPoP 2 true TOKEN_TYPE_BEARER true TENANT_NOT_FOUND 1.0.0"
    assert result.stdout.split() == expected.split()

    # The package's types resolve for a TypeScript consumer (node16 resolution reads `exports`).
    (consumer / "main.ts").write_text(textwrap.dedent(CONSUMER_TS))
    tsc = typescript_client / "node_modules" / ".bin" / "tsc"
    run_checked(
        [str(tsc), "--noEmit", "--strict", "--skipLibCheck", "--module", "node16",
         "--moduleResolution", "node16", "--target", "es2022", "--types", "node",
         "--typeRoots", str(typescript_client / "node_modules" / "@types"), "main.ts"],
        cwd=consumer,
    )  # fmt: skip
