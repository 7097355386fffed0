/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.grpc.ManagedChannel;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpResponse.BodyHandlers;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import no.helseid.broker.v1.AuthorizeRequestRequest;
import no.helseid.broker.v1.AuthorizeRequestResponse;
import no.helseid.broker.v1.TokenBrokerServiceGrpc;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The benchmark (not part of {@code mvn test}): {@code mvn -q -Pbench test} with the demo environment set.
 * Prints figures only; nothing is asserted about time. BENCH_TOKEN_CALLS and BENCH_HTTP_REQUESTS change the
 * counts.
 */
@Tag("bench")
class BenchmarkTest {
  private static long count(String name, long fallback) {
    String value = System.getenv(name);
    return value == null || value.isBlank() ? fallback : Long.parseLong(value.trim());
  }

  private static void print(String line) {
    System.out.println("[bench] " + line);
  }

  @Test
  void benchmark() throws Exception {
    DemoEnv env = new DemoEnv();
    long tokenCalls = count("BENCH_TOKEN_CALLS", 20_000_000);
    int httpRequests = (int) count("BENCH_HTTP_REQUESTS", 1000);
    ManagedChannel channel = BrokerChannels.builderFromEnvironment(System.getenv()).build();
    try {
      // (a) a cached token through the local token source
      try (BrokerTokenSource tokens = BrokerTokenSource.builder(channel, env.tenant, env.target).build()) {
        tokens.get();
        long sink = 0;
        for (int i = 0; i < 1_000_000; i++) {
          sink += tokens.get().getToken().length();
        }
        long start = System.nanoTime();
        for (long i = 0; i < tokenCalls; i++) {
          sink += tokens.get().getToken().length();
        }
        long elapsed = System.nanoTime() - start;
        print(String.format(Locale.ROOT, "token source get(): %,d calls in %.2f s: %,.0f calls/s, %.1f ns/call "
            + "(GetToken calls: %d)", tokenCalls, elapsed / 1e9, tokenCalls / (elapsed / 1e9),
            (double) elapsed / tokenCalls, tokens.stats().getTokenCalls));
        if (sink == 42) {
          print("unlikely");
        }
      }

      // (b) HTTP requests to the demo API: through the wrapper, and by hand (AuthorizeRequest on the stub)
      HttpClient plain = HttpClient.newHttpClient();
      BrokerHttpClient wrapper = BrokerHttpClient.builder(channel, env.tenant, env.target).httpClient(plain).build();
      TokenBrokerServiceGrpc.TokenBrokerServiceBlockingStub stub = TokenBrokerServiceGrpc.newBlockingStub(channel);
      URI uri = URI.create(env.apiUrl + "bench");
      HttpRequest request = HttpRequest.newBuilder(uri).GET().build();
      String[] nonce = {""};
      Runnable byHand = () -> {
        try {
          for (int attempt = 0; attempt < 2; attempt++) {
            AuthorizeRequestResponse auth = stub.withDeadlineAfter(10, TimeUnit.SECONDS).authorizeRequest(
                AuthorizeRequestRequest.newBuilder().setTenant(env.tenant).setTarget(env.target)
                    .setHttpMethod("GET").setUrl(uri.toString()).setDpopNonce(nonce[0]).build());
            HttpResponse<String> answer = plain.send(HttpRequest.newBuilder(uri).GET()
                .header("Authorization", auth.getAuthorization()).header("DPoP", auth.getDpop()).build(),
                BodyHandlers.ofString());
            answer.headers().firstValue("DPoP-Nonce").ifPresent(v -> nonce[0] = v);
            if (answer.statusCode() == 200) {
              return;
            }
          }
          throw new AssertionError("by hand: no 200");
        } catch (java.io.IOException | InterruptedException e) {
          throw new IllegalStateException(e);
        }
      };
      for (int i = 0; i < 50; i++) { // warm-up of both paths
        assertEquals(200, wrapper.send(request, BodyHandlers.ofString()).statusCode());
        byHand.run();
      }
      long retriesBefore = wrapper.nonceRetries();
      // interleaved rounds, each path first in every other round, so that neither gets a warmer JIT, broker
      // or demo API than the other
      int rounds = 10;
      int perRound = Math.max(1, httpRequests / rounds);
      httpRequests = perRound * rounds;
      double wrapped = 0;
      double manual = 0;
      for (int round = 0; round < rounds; round++) {
        for (int turn = 0; turn < 2; turn++) {
          boolean wrapperTurn = (round + turn) % 2 == 0;
          long start = System.nanoTime();
          for (int i = 0; i < perRound; i++) {
            if (wrapperTurn) {
              assertEquals(200, wrapper.send(request, BodyHandlers.ofString()).statusCode());
            } else {
              byHand.run();
            }
          }
          double seconds = (System.nanoTime() - start) / 1e9;
          if (wrapperTurn) {
            wrapped += seconds;
          } else {
            manual += seconds;
          }
        }
      }
      print(String.format(Locale.ROOT, "BrokerHttpClient (AuthorizeRequest + GET, one at a time): %,d requests in %.2f s: "
          + "%,.0f requests/s, %.2f ms/request (nonce retries: %d)", httpRequests, wrapped, httpRequests / wrapped,
          wrapped * 1000 / httpRequests, wrapper.nonceRetries() - retriesBefore));
      print(String.format(Locale.ROOT, "by hand (AuthorizeRequest on the stub + GET, one at a time): %,d requests in "
          + "%.2f s: %,.0f requests/s, %.2f ms/request", httpRequests, manual, httpRequests / manual,
          manual * 1000 / httpRequests));
      print(String.format(Locale.ROOT, "wrapper overhead: %+.3f ms/request (%+.1f %%)",
          (wrapped - manual) * 1000 / httpRequests, (wrapped / manual - 1) * 100));
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
