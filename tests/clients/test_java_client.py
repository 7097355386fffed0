"""The Java client (clients/java, Maven no.helseid.broker:helseid-broker-client) against a running broker.

Its own JUnit 5 suite runs with `mvn -q test` against the demo broker's environment variables (the build
generates the gRPC stubs from protos/ first). Then the client is installed into the default local Maven
repository (`mvn install -DskipTests`) and a fresh consumer project in a temporary folder, depending on
no.helseid.broker:helseid-broker-client:1.0.0 the ordinary way, is compiled by Maven and run with its
dependency classpath: it calls the demo API through BrokerHttpClient and must print 200. Java and Maven must
be installed: a missing toolchain fails, never skips.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from tests.clients.runner import ROOT, DemoBroker, run_checked

CLIENT = ROOT / "clients" / "java"
# The first Maven run on a fresh machine downloads plugins, protoc and the dependencies; later runs are
# served from the local repository.
MAVEN_TIMEOUT_S = 900
MAVEN = ["mvn", "-B", "-q", "--no-transfer-progress"]
_SUMMARY = re.compile(r"Tests run: (\d+), Failures: (\d+), Errors: (\d+), Skipped: (\d+)")


def _surefire_summary() -> tuple[int, int, int, int]:
    """Tests run, failures, errors and skipped, added up over the suite's Surefire reports."""
    totals = [0, 0, 0, 0]
    for report in sorted((CLIENT / "target" / "surefire-reports").glob("*.txt")):
        found = _SUMMARY.search(report.read_text())
        if found:
            totals = [total + int(value) for total, value in zip(totals, found.groups(), strict=True)]
    return totals[0], totals[1], totals[2], totals[3]


def test_java_client_passes_against_broker(demo_broker: DemoBroker) -> None:
    for stale in (CLIENT / "target" / "surefire-reports").glob("*.txt"):
        stale.unlink()
    run_checked([*MAVEN, "test"], cwd=CLIENT, env=demo_broker.env, timeout_s=MAVEN_TIMEOUT_S)
    run, failures, errors, skipped = _surefire_summary()
    print(f"JUnit: {run - failures - errors - skipped} passed, {failures + errors} failed, {skipped} skipped")
    assert run > 0
    assert failures == 0
    assert errors == 0


CONSUMER_POM = """\
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>example</groupId>
  <artifactId>broker-consumer</artifactId>
  <version>0.0.1</version>
  <properties>
    <maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencies>
    <dependency>
      <groupId>no.helseid.broker</groupId>
      <artifactId>helseid-broker-client</artifactId>
      <version>1.0.0</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-compiler-plugin</artifactId>
        <version>3.14.0</version>
      </plugin>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-resources-plugin</artifactId>
        <version>3.3.1</version>
      </plugin>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
"""

CONSUMER_MAIN = """\
package example;

import io.grpc.ManagedChannel;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import no.helseid.broker.client.BrokerChannels;
import no.helseid.broker.client.BrokerHttpClient;
import no.helseid.broker.client.BrokerTokenSource;

public class Main {
  public static void main(String[] args) throws Exception {
    ManagedChannel channel = BrokerChannels.fromEnvironment(); // HELSEID_BROKER_ADDR
    BrokerHttpClient http = BrokerHttpClient.builder(channel, "demo", "demo-api").build();
    HttpResponse<String> answer = http.send(
        HttpRequest.newBuilder(URI.create(System.getenv("DEMO_API_URL") + "patients/1")).GET().build(),
        HttpResponse.BodyHandlers.ofString());
    System.out.println(answer.statusCode() + " " + http.nonceRetries());
    try (BrokerTokenSource tokens = BrokerTokenSource.builder(channel, "demo", "demo-bearer").build()) {
      System.out.println(tokens.get().getTokenType());
    }
    channel.shutdownNow();
  }
}
"""


def test_consumer_project_calls_the_demo_api(demo_broker: DemoBroker, tmp_path: Path) -> None:
    run_checked([*MAVEN, "install", "-DskipTests"], cwd=CLIENT, timeout_s=MAVEN_TIMEOUT_S)
    (tmp_path / "pom.xml").write_text(CONSUMER_POM)
    source = tmp_path / "src" / "main" / "java" / "example"
    source.mkdir(parents=True)
    (source / "Main.java").write_text(textwrap.dedent(CONSUMER_MAIN))
    run_checked(
        [*MAVEN, "compile", "dependency:build-classpath", "-Dmdep.outputFile=classpath.txt"],
        cwd=tmp_path,
        timeout_s=MAVEN_TIMEOUT_S,
    )
    classpath = f"{tmp_path / 'target' / 'classes'}:{(tmp_path / 'classpath.txt').read_text().strip()}"
    result = run_checked(
        ["java", "-cp", classpath, "example.Main"], cwd=tmp_path, env=demo_broker.env, timeout_s=120
    )
    assert result.stdout.split() == ["200", "1", "TOKEN_TYPE_BEARER"], result.stdout
    print(result.stdout.strip())
