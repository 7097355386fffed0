/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpRequest.BodyPublishers;
import java.net.http.HttpResponse;
import java.net.http.HttpResponse.BodyHandlers;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import no.helseid.broker.v1.AccessToken;
import no.helseid.broker.v1.TokenType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Against a running broker with the demo API (the environment of tests/clients/runner.py). */
class DemoApiTest {
  private static DemoEnv env;
  private static ManagedChannel channel;

  @BeforeAll
  static void connect() {
    env = new DemoEnv();
    channel = BrokerChannels.builderFromEnvironment(System.getenv()).build();
  }

  @AfterAll
  static void disconnect() throws InterruptedException {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static BrokerHttpClient dpopClient() {
    return BrokerHttpClient.builder(channel, env.tenant, env.target).build();
  }

  @Test
  void getSucceedsAfterExactlyOneNonceRetryThenNeedsNone() throws Exception {
    BrokerHttpClient http = dpopClient();
    long challenges = env.stat("nonce_challenges");
    long accepted = env.stat("accepted");
    HttpRequest request = HttpRequest.newBuilder(URI.create(env.apiUrl + "records?page=1")).GET().build();

    HttpResponse<String> first = http.send(request, BodyHandlers.ofString());
    assertEquals(200, first.statusCode(), first.body());
    assertEquals("DPoP", DemoEnv.field(first.body(), "token_type"));
    assertEquals("GET", DemoEnv.field(first.body(), "method"));
    assertEquals(1, http.nonceRetries(), "a new client knows no nonce: exactly one retry");
    assertEquals(2, http.requestsSent());
    assertEquals(challenges + 1, env.stat("nonce_challenges"));
    assertEquals(accepted + 1, env.stat("accepted"));
    assertTrue(http.nonceFor(request.uri()).isPresent(), "the answer's DPoP-Nonce is remembered");

    HttpResponse<String> second = http.send(request, BodyHandlers.ofString());
    assertEquals(200, second.statusCode(), second.body());
    assertEquals(1, http.nonceRetries(), "the remembered nonce needs no retry");
    assertEquals(3, http.requestsSent());
    assertEquals(challenges + 1, env.stat("nonce_challenges"));
  }

  @Test
  void postSucceedsAfterExactlyOneNonceRetryWithItsBodySentTwice() throws Exception {
    BrokerHttpClient http = dpopClient();
    long challenges = env.stat("nonce_challenges");
    byte[] body = "{\"note\":\"hello from Java\"}".getBytes(StandardCharsets.UTF_8);
    HttpRequest request = HttpRequest.newBuilder(URI.create(env.apiUrl + "notes"))
        .header("Content-Type", "application/json")
        .POST(BodyPublishers.ofByteArray(body))
        .build();
    HttpResponse<String> answer = http.send(request, BodyHandlers.ofString());
    assertEquals(200, answer.statusCode(), answer.body());
    assertEquals("POST", DemoEnv.field(answer.body(), "method"));
    assertEquals(String.valueOf(body.length), DemoEnv.field(answer.body(), "body_bytes"));
    assertEquals(1, http.nonceRetries());
    assertEquals(challenges + 1, env.stat("nonce_challenges"));
  }

  @Test
  void aRotatedNonceIsRetriedExactlyOnceAsync() throws Exception {
    BrokerHttpClient http = dpopClient();
    HttpRequest request = HttpRequest.newBuilder(URI.create(env.apiUrl + "async")).GET().build();
    assertEquals(200, http.sendAsync(request, BodyHandlers.ofString()).get(30, TimeUnit.SECONDS).statusCode());
    assertEquals(1, http.nonceRetries());
    String before = http.nonceFor(request.uri()).orElseThrow();

    env.rotateNonce();
    long challenges = env.stat("nonce_challenges");
    HttpResponse<String> answer = http.sendAsync(request, BodyHandlers.ofString()).get(30, TimeUnit.SECONDS);
    assertEquals(200, answer.statusCode(), answer.body());
    assertEquals(2, http.nonceRetries(), "the stale nonce costs exactly one retry");
    assertEquals(challenges + 1, env.stat("nonce_challenges"));
    assertNotEquals(before, http.nonceFor(request.uri()).orElseThrow());
  }

  @Test
  void bearerTargetNeedsNoProof() throws Exception {
    BrokerHttpClient http = BrokerHttpClient.builder(channel, env.tenant, env.bearerTarget).build();
    HttpResponse<String> answer = http.send(
        HttpRequest.newBuilder(URI.create(env.bearerUrl + "items")).GET().build(), BodyHandlers.ofString());
    assertEquals(200, answer.statusCode(), answer.body());
    assertEquals("Bearer", DemoEnv.field(answer.body(), "token_type"));
    assertEquals(0, http.nonceRetries());
  }

  @Test
  void unknownTenantIsATypedError() {
    BrokerHttpClient http = BrokerHttpClient.builder(channel, "nope", env.target).build();
    BrokerException error = assertThrows(BrokerException.class, () -> http.send(
        HttpRequest.newBuilder(URI.create(env.apiUrl + "x")).GET().build(), BodyHandlers.discarding()));
    assertEquals("TENANT_NOT_FOUND", error.reason());
    assertEquals(BrokerException.DOMAIN, error.domain());
    assertEquals(Status.Code.NOT_FOUND, error.code());

    try (BrokerTokenSource tokens = BrokerTokenSource.builder(channel, "nope", env.target).watch(false).build()) {
      assertEquals("TENANT_NOT_FOUND", assertThrows(BrokerException.class, tokens::get).reason());
    }
  }

  @Test
  void urlOutsideTheTargetIsATypedError() {
    BrokerHttpClient http = dpopClient();
    BrokerException error = assertThrows(BrokerException.class, () -> http.send(
        HttpRequest.newBuilder(URI.create("https://elsewhere.example/records")).GET().build(),
        BodyHandlers.discarding()));
    assertEquals("URL_NOT_ALLOWED", error.reason());
    assertEquals(Status.Code.PERMISSION_DENIED, error.status().getCode());
    assertTrue(error.getMessage().contains("URL_NOT_ALLOWED"), error.getMessage());
  }

  @Test
  void anAttestPathWithoutAnAttestIsATypedError() throws Exception {
    BrokerHttpClient http = dpopClient();
    long rejected = env.stat("rejected");
    HttpRequest request = HttpRequest.newBuilder(URI.create(env.apiUrl + "attest/records")).GET().build();
    BrokerException error = assertThrows(BrokerException.class, () -> http.send(request, BodyHandlers.ofString()));
    assertEquals(BrokerHttpClient.INSUFFICIENT_AUTHORIZATION_DETAILS, error.reason());
    assertEquals(Status.Code.PERMISSION_DENIED, error.code());
    assertEquals("DPoP", error.metadata().get("scheme"));
    assertEquals("403", error.metadata().get("http_status"));
    assertTrue(error.getMessage().contains("care context") && error.getMessage().contains("attest"),
        error.getMessage());
    assertEquals(1, http.nonceRetries(), "the nonce challenge first, then the 403");

    var failed = assertThrows(java.util.concurrent.ExecutionException.class,
        () -> http.sendAsync(request, BodyHandlers.ofString()).get(30, TimeUnit.SECONDS));
    assertTrue(failed.getCause() instanceof BrokerException, failed.toString());
    assertEquals(BrokerHttpClient.INSUFFICIENT_AUTHORIZATION_DETAILS, ((BrokerException) failed.getCause()).reason());
    assertEquals(1, http.nonceRetries());
    assertTrue(env.stat("rejected") >= rejected + 2, "the demo API refused both");

    HttpResponse<String> plain = http.send(
        HttpRequest.newBuilder(URI.create(env.apiUrl + "records")).GET().build(), BodyHandlers.ofString());
    assertEquals(200, plain.statusCode(), "a path without the attest requirement still answers");
  }

  @Test
  void renewalIsSeenThroughTheLocalCacheWithoutAnRpcPerRead() throws Exception {
    Map<String, AtomicLong> calls = new ConcurrentHashMap<>();
    Channel counted = ClientInterceptors.intercept(channel, new ClientInterceptor() {
      @Override
      public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
        calls.computeIfAbsent(method.getBareMethodName(), k -> new AtomicLong()).incrementAndGet();
        return next.newCall(method, options);
      }
    });
    try (BrokerTokenSource tokens = BrokerTokenSource.builder(counted, env.tenant, env.bearerTarget)
        .skew(Duration.ofSeconds(2)).build()) {
      long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      while (!tokens.isStreaming() && System.nanoTime() < deadline) {
        Thread.sleep(20);
      }
      assertTrue(tokens.isStreaming(), "the WatchToken stream delivered no token");
      AccessToken first = tokens.get();
      assertEquals(TokenType.TOKEN_TYPE_BEARER, first.getTokenType());
      assertFalse(first.getToken().isEmpty());

      long reads = 0;
      AccessToken current = first;
      deadline = System.nanoTime() + Duration.ofSeconds(25).toNanos();
      while (current.getToken().equals(first.getToken()) && System.nanoTime() < deadline) {
        for (int i = 0; i < 1000; i++) {
          current = tokens.get();
          reads++;
        }
        Thread.sleep(10);
      }
      assertNotEquals(first.getToken(), current.getToken(), "no renewal reached the cache within 25 s");
      assertTrue(current.getExpireTime().getSeconds() >= first.getExpireTime().getSeconds());
      assertEquals(1, calls.getOrDefault("WatchToken", new AtomicLong()).get(), "one stream, no reconnect");
      assertEquals(0, calls.getOrDefault("GetToken", new AtomicLong()).get(),
          reads + " reads made GetToken calls");
      assertTrue(tokens.stats().watchMessages >= 2, tokens.stats().toString());
    }
  }
}
