/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.Code;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpRequest.BodyPublishers;
import java.net.http.HttpResponse;
import java.net.http.HttpResponse.BodyHandlers;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import no.helseid.broker.v1.CareContext;
import no.helseid.broker.v1.GetBrokerInfoRequest;
import no.helseid.broker.v1.TokenBrokerServiceGrpc;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The helpers' logic against a scripted broker and resource server: no real broker needed. */
class OfflineTest {
  private FakeBroker broker;
  private FakeResourceServer api;
  private ManagedChannel channel;

  @BeforeEach
  void start() throws Exception {
    broker = new FakeBroker();
    api = new FakeResourceServer();
    channel = BrokerChannels.builder().address(broker.address()).build();
  }

  @AfterEach
  void stop() throws Exception {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    api.close();
    broker.close();
  }

  private static void await(java.util.function.BooleanSupplier condition, String what) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out waiting for " + what);
      }
      Thread.sleep(10);
    }
  }

  @Test
  void nonceChallengesAreRecognised() {
    assertTrue(BrokerHttpClient.isNonceChallenge(List.of("DPoP error=\"use_dpop_nonce\", error_description=\"x\"")));
    assertTrue(BrokerHttpClient.isNonceChallenge(List.of("dpop algs=\"ES256\", error=use_dpop_nonce")));
    assertTrue(BrokerHttpClient.isNonceChallenge(
        List.of("Bearer realm=\"api\", DPoP algs=\"ES256 PS256\", error=\"use_dpop_nonce\"")));
    assertTrue(BrokerHttpClient.isNonceChallenge(List.of("Bearer realm=\"api\"", "DPoP error=\"use_dpop_nonce\"")));
    assertFalse(BrokerHttpClient.isNonceChallenge(List.of("DPoP error=\"invalid_token\"")));
    assertFalse(BrokerHttpClient.isNonceChallenge(List.of("Bearer error=\"use_dpop_nonce\"")));
    assertFalse(BrokerHttpClient.isNonceChallenge(
        List.of("DPoP error=\"invalid_dpop_proof\", Bearer error=\"use_dpop_nonce\"")));
    assertFalse(BrokerHttpClient.isNonceChallenge(List.of()));
  }

  @Test
  void insufficientAuthorizationDetailsChallengesAreRecognised() {
    assertEquals("DPoP", BrokerHttpClient.insufficientAuthorizationDetails(
        List.of("DPoP error=\"insufficient_authorization_details\", error_description=\"x\""))[0]);
    assertEquals("Bearer", BrokerHttpClient.insufficientAuthorizationDetails(
        List.of("Bearer realm=\"api\", error=insufficient_authorization_details"))[0]);
    assertEquals("DPoP", BrokerHttpClient.insufficientAuthorizationDetails(
        List.of("Bearer realm=\"api\", DPoP algs=\"ES256\", error=\"insufficient_authorization_details\""))[0]);
    assertNull(BrokerHttpClient.insufficientAuthorizationDetails(List.of("DPoP error=\"insufficient_scope\"")));
    assertNull(BrokerHttpClient.insufficientAuthorizationDetails(
        List.of("DPoP error=\"insufficient_authorization_details_x\"")));
    assertNull(BrokerHttpClient.insufficientAuthorizationDetails(
        List.of("Basic error=\"insufficient_authorization_details\"")));
    assertNull(BrokerHttpClient.insufficientAuthorizationDetails(List.of()));
  }

  @Test
  void insufficientAuthorizationDetailsIsATypedErrorSyncAndAsync() throws Exception {
    api.forbidden = "Bearer error=\"insufficient_authorization_details\", error_description=\"needs \\\"attest\\\"\"";
    BrokerHttpClient http = BrokerHttpClient.builder(channel, "demo", "demo-api").build();
    HttpRequest request = HttpRequest.newBuilder(URI.create(api.url("/attest/r?patient=1"))).GET().build();
    BrokerException error = assertThrows(BrokerException.class, () -> http.send(request, BodyHandlers.ofString()));
    assertEquals(BrokerHttpClient.INSUFFICIENT_AUTHORIZATION_DETAILS, error.reason());
    assertEquals(Status.Code.PERMISSION_DENIED, error.code());
    assertEquals("", error.domain());
    assertEquals("Bearer", error.metadata().get("scheme"));
    assertEquals(api.url("/attest/r"), error.metadata().get("url"), "no query in the error");
    assertEquals("needs \"attest\"", error.metadata().get("error_description"));
    assertTrue(error.getMessage().contains("care context"), error.getMessage());
    assertEquals(2, api.seen.size(), "after the nonce retry, the 403 is not retried");

    var failed = assertThrows(java.util.concurrent.ExecutionException.class,
        () -> http.sendAsync(request, BodyHandlers.ofString()).get(10, TimeUnit.SECONDS));
    assertTrue(failed.getCause() instanceof BrokerException, failed.toString());
    assertEquals(BrokerHttpClient.INSUFFICIENT_AUTHORIZATION_DETAILS, ((BrokerException) failed.getCause()).reason());
    assertEquals(3, api.seen.size(), "the remembered nonce: one request");
  }

  @Test
  void otherForbiddenAnswersAreHandedBack() throws Exception {
    BrokerHttpClient http = BrokerHttpClient.builder(channel, "demo", "demo-api").build();
    for (String challenge : List.of("", "DPoP error=\"insufficient_scope\"", "Basic realm=\"x\"")) {
      api.forbidden = challenge;
      HttpResponse<String> answer = http.send(
          HttpRequest.newBuilder(URI.create(api.url("/x"))).GET().build(), BodyHandlers.ofString());
      assertEquals(403, answer.statusCode(), challenge);
      assertEquals("{\"error\":\"forbidden\"}", answer.body(), challenge);
      HttpResponse<String> async = http.sendAsync(
          HttpRequest.newBuilder(URI.create(api.url("/y"))).GET().build(), BodyHandlers.ofString())
          .get(10, TimeUnit.SECONDS);
      assertEquals(403, async.statusCode(), challenge);
    }
  }

  @Test
  void originsSpellOutTheDefaultPort() {
    assertEquals("https://api.example:443", BrokerHttpClient.origin(URI.create("https://API.example/a?b")));
    assertEquals("http://api.example:80", BrokerHttpClient.origin(URI.create("http://api.example/")));
    assertEquals("http://127.0.0.1:8080", BrokerHttpClient.origin(URI.create("http://127.0.0.1:8080/x")));
  }

  @Test
  void getRetriesOnceWithTheChallengesNonceThenRemembersIt() throws Exception {
    BrokerHttpClient http = BrokerHttpClient.builder(channel, "demo", "demo-api").build();
    HttpRequest request = HttpRequest.newBuilder(URI.create(api.url("/records"))).GET()
        .header("Authorization", "stale").build();
    HttpResponse<String> answer = http.send(request, BodyHandlers.ofString());
    assertEquals(200, answer.statusCode(), answer.body());
    assertEquals(2, api.seen.size());
    assertEquals("DPoP service-token", api.seen.get(1).authorization, "the caller's own Authorization is replaced");
    assertEquals(List.of("", "n1"), broker.authorizeRequests.stream().map(r -> r.getDpopNonce()).toList());
    assertEquals(api.url("/records"), broker.authorizeRequests.get(0).getUrl());
    assertEquals("GET", broker.authorizeRequests.get(0).getHttpMethod());

    assertEquals(200, http.send(request, BodyHandlers.ofString()).statusCode());
    assertEquals(3, api.seen.size(), "the remembered nonce costs no retry");
    assertEquals(1, http.nonceRetries());
  }

  @Test
  void postBodyIsSentAgainOnTheRetry() throws Exception {
    BrokerHttpClient http = BrokerHttpClient.builder(channel, "demo", "demo-api").build();
    HttpRequest request = HttpRequest.newBuilder(URI.create(api.url("/notes")))
        .POST(BodyPublishers.ofString("{\"a\":1}")).build();
    HttpResponse<String> answer = http.send(request, BodyHandlers.ofString());
    assertEquals(200, answer.statusCode());
    assertEquals(2, api.seen.size());
    assertEquals("{\"a\":1}", api.seen.get(0).body);
    assertEquals("{\"a\":1}", api.seen.get(1).body);
    assertEquals("POST", api.seen.get(1).method);
  }

  @Test
  void aSecondChallengeIsHandedBackNotRetried() throws Exception {
    api.alwaysChallenge = true;
    api.challengeStatus = 400;
    BrokerHttpClient http = BrokerHttpClient.builder(channel, "demo", "demo-api").build();
    HttpResponse<String> answer = http.send(
        HttpRequest.newBuilder(URI.create(api.url("/x"))).GET().build(), BodyHandlers.ofString());
    assertEquals(400, answer.statusCode());
    assertEquals("{\"error\":\"use_dpop_nonce\"}", answer.body(), "the second answer reaches the caller whole");
    assertEquals(2, api.seen.size(), "exactly one retry");

    HttpResponse<String> async = http.sendAsync(
        HttpRequest.newBuilder(URI.create(api.url("/y"))).GET().build(), BodyHandlers.ofString()).get(10, TimeUnit.SECONDS);
    assertEquals(400, async.statusCode());
    assertEquals(4, api.seen.size(), "exactly one retry, async too");
  }

  @Test
  void careContextAndTheAnswersHeadersAreSent() throws Exception {
    BrokerHttpClient http = BrokerHttpClient.builder(channel, "demo", "demo-api").build();
    CareContext care = CareContext.newBuilder().setPatientId("13116900216").build();
    http.send(HttpRequest.newBuilder(URI.create(api.url("/p"))).GET().build(), BodyHandlers.discarding(), care);
    assertEquals("13116900216", broker.authorizeRequests.get(0).getCareContext().getPatientId());
    assertEquals("13116900216", api.seen.get(1).care);
  }

  @Test
  void sessionRequestsUseAuthorizeSessionRequest() throws Exception {
    BrokerHttpClient http = BrokerHttpClient.forSession(channel, "session-1", "demo-api").build();
    HttpResponse<String> answer = http.sendAsync(
        HttpRequest.newBuilder(URI.create(api.url("/me"))).GET().build(), BodyHandlers.ofString()).get(10, TimeUnit.SECONDS);
    assertEquals(200, answer.statusCode());
    assertEquals(2, broker.sessionRequests.size());
    assertEquals("session-1", broker.sessionRequests.get(1).getSessionId());
    assertEquals("DPoP session-token", api.seen.get(1).authorization);
    assertTrue(broker.authorizeRequests.isEmpty());
  }

  @Test
  void brokerFailuresAreBrokerExceptionsSyncAndAsync() {
    BrokerHttpClient http = BrokerHttpClient.builder(channel, "nope", "demo-api").build();
    HttpRequest request = HttpRequest.newBuilder(URI.create(api.url("/x"))).GET().build();
    assertEquals(Status.Code.NOT_FOUND,
        assertThrows(BrokerException.class, () -> http.send(request, BodyHandlers.discarding())).code());
    var failed = assertThrows(java.util.concurrent.ExecutionException.class,
        () -> http.sendAsync(request, BodyHandlers.discarding()).get(10, TimeUnit.SECONDS));
    assertTrue(failed.getCause() instanceof BrokerException, failed.toString());
    assertTrue(api.seen.isEmpty());
  }

  @Test
  void errorInfoAndRetryInfoAreRead() {
    com.google.rpc.Status status = com.google.rpc.Status.newBuilder()
        .setCode(Code.UNAVAILABLE_VALUE)
        .setMessage("HelseID is unreachable")
        .addDetails(Any.pack(ErrorInfo.newBuilder().setReason("STS_UNAVAILABLE").setDomain("broker.helseid")
            .putMetadata("tenant", "demo").build()))
        .addDetails(Any.pack(RetryInfo.newBuilder()
            .setRetryDelay(com.google.protobuf.Duration.newBuilder().setSeconds(2).setNanos(500_000_000)).build()))
        .build();
    BrokerException error = BrokerException.of(StatusProto.toStatusRuntimeException(status));
    assertEquals("STS_UNAVAILABLE", error.reason());
    assertEquals("broker.helseid", error.domain());
    assertEquals(Map.of("tenant", "demo"), error.metadata());
    assertEquals(Duration.ofMillis(2500), error.retryDelay().orElseThrow());
    assertEquals(Status.Code.UNAVAILABLE, error.code());
    assertEquals("UNAVAILABLE (STS_UNAVAILABLE): HelseID is unreachable", error.getMessage());

    BrokerException plain = BrokerException.of(Status.RESOURCE_EXHAUSTED.asRuntimeException());
    assertEquals("", plain.reason());
    assertTrue(plain.retryDelay().isEmpty());
    assertEquals(Status.Code.UNKNOWN, BrokerException.of(new IllegalStateException("x")).code());
  }

  @Test
  void theCredentialTravelsAsBearerMetadata() throws Exception {
    ManagedChannel withCredential = BrokerChannels.builderFromEnvironment(
        Map.of(BrokerChannels.ADDR_ENV, broker.address(), BrokerChannels.CREDENTIAL_ENV, "s3cret")).build();
    try {
      TokenBrokerServiceGrpc.newBlockingStub(withCredential).withDeadlineAfter(5, TimeUnit.SECONDS)
          .getBrokerInfo(GetBrokerInfoRequest.getDefaultInstance());
    } catch (io.grpc.StatusRuntimeException unimplemented) {
      // the fake serves no GetBrokerInfo; the metadata arrived all the same
    } finally {
      withCredential.shutdownNow();
    }
    assertEquals(List.of("Bearer s3cret"), broker.callerAuthorization);
  }

  @Test
  void aCredentialIsNeverSentInPlaintextOffLoopback() {
    IllegalArgumentException refused = assertThrows(IllegalArgumentException.class,
        () -> BrokerChannels.builder().address("broker.example:50051").credential("s3cret").build());
    assertTrue(refused.getMessage().contains("plaintext"), refused.getMessage());
    BrokerChannels.builder().address("broker.example:50051").build().shutdownNow(); // no credential: allowed
    BrokerChannels.builder().address("broker.example:443").credential("s3cret").tls(true).build().shutdownNow();
    assertTrue(BrokerChannels.isLoopback("127.0.0.1:50051"));
    assertTrue(BrokerChannels.isLoopback("127.9.9.9:1"));
    assertTrue(BrokerChannels.isLoopback("localhost:50051"));
    assertTrue(BrokerChannels.isLoopback("[::1]:50051"));
    assertTrue(BrokerChannels.isLoopback("dns:///localhost:50051"));
    assertFalse(BrokerChannels.isLoopback("10.0.0.1:50051"));
    assertFalse(BrokerChannels.isLoopback("localhost.example.com:50051"));
    assertThrows(IllegalArgumentException.class, () -> BrokerChannels.builderFromEnvironment(
        Map.of(BrokerChannels.CERT_FILE_ENV, "cert.pem")));
  }

  @Test
  void theSourceServesTheStreamsTokenAndEachRenewalWithoutRpcs() throws Exception {
    try (BrokerTokenSource tokens = BrokerTokenSource.builder(channel, "demo", "demo-bearer").build()) {
      await(tokens::isStreaming, "the stream");
      assertEquals("watch-1", tokens.token());
      broker.renew("renewed");
      await(() -> tokens.token().equals("renewed"), "the renewal");
      for (int i = 0; i < 10_000; i++) {
        tokens.get();
      }
      assertEquals(0, broker.getTokenCalls.get());
      assertEquals(1, broker.watchConnects.get());
    }
  }

  @Test
  void theSourceFallsBackToGetTokenAndReconnectsWithBackoff() throws Exception {
    broker.watchFailures = 3;
    try (BrokerTokenSource tokens = BrokerTokenSource.builder(channel, "demo", "demo-bearer")
        .backoff(Duration.ofMillis(50), Duration.ofMillis(200)).build()) {
      assertEquals("get-1", tokens.token(), "nothing streamed yet: one GetToken");
      assertEquals("get-1", tokens.token(), "then cached");
      assertEquals(1, broker.getTokenCalls.get());
      await(tokens::isStreaming, "the reconnected stream");
      assertEquals(4, broker.watchConnects.get());
      assertEquals("watch-4", tokens.token());
      assertEquals(4, tokens.stats().watchConnects);
    }
  }

  @Test
  void aTokenIsNeverHandedOutWithinTheSkewOfItsExpiry() throws Exception {
    broker.lifetimeSeconds = 3; // shorter than the skew: never usable from the cache
    try (BrokerTokenSource tokens = BrokerTokenSource.builder(channel, "demo", "demo-bearer")
        .watch(false).skew(Duration.ofSeconds(5)).build()) {
      tokens.get();
      tokens.get();
      assertEquals(2, broker.getTokenCalls.get());
    }
    broker.lifetimeSeconds = 60;
    try (BrokerTokenSource tokens = BrokerTokenSource.builder(channel, "demo", "demo-bearer").watch(false).build()) {
      tokens.get();
      tokens.get();
      assertEquals(3, broker.getTokenCalls.get());
      assertTrue(tokens.usableUntil().isAfter(java.time.Instant.now().plusSeconds(50)));
    }
  }

  @Test
  void aClosedSourceHangsUp() throws Exception {
    BrokerTokenSource tokens = BrokerTokenSource.builder(channel, "demo", "demo-bearer").build();
    await(tokens::isStreaming, "the stream");
    tokens.close();
    broker.breakAfterFirst = true;
    Thread.sleep(100);
    assertEquals(1, broker.watchConnects.get(), "no reconnect after close");
    assertNull(tokens.lastStreamError().orElse(null));
  }
}
