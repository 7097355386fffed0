/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import com.google.protobuf.Timestamp;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import no.helseid.broker.v1.AccessToken;
import no.helseid.broker.v1.AuthorizeRequestRequest;
import no.helseid.broker.v1.AuthorizeRequestResponse;
import no.helseid.broker.v1.AuthorizeSessionRequestRequest;
import no.helseid.broker.v1.AuthorizeSessionRequestResponse;
import no.helseid.broker.v1.GetTokenRequest;
import no.helseid.broker.v1.GetTokenResponse;
import no.helseid.broker.v1.HttpHeader;
import no.helseid.broker.v1.TokenBrokerServiceGrpc;
import no.helseid.broker.v1.TokenType;
import no.helseid.broker.v1.WatchTokenRequest;
import no.helseid.broker.v1.WatchTokenResponse;

/** A scripted broker on a loopback port, for tests that need no real one. */
final class FakeBroker extends TokenBrokerServiceGrpc.TokenBrokerServiceImplBase implements AutoCloseable {
  static final Metadata.Key<String> AUTHORIZATION = Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  final List<AuthorizeRequestRequest> authorizeRequests = new CopyOnWriteArrayList<>();
  final List<AuthorizeSessionRequestRequest> sessionRequests = new CopyOnWriteArrayList<>();
  final List<String> callerAuthorization = new CopyOnWriteArrayList<>();
  final AtomicInteger getTokenCalls = new AtomicInteger();
  final AtomicInteger watchConnects = new AtomicInteger();
  /** How many WatchToken connects fail at once (UNAVAILABLE) before one streams. */
  volatile int watchFailures;
  /** Lifetime of the tokens handed out, in seconds. */
  volatile long lifetimeSeconds = 60;
  /** Whether a streaming WatchToken breaks after its first token. */
  volatile boolean breakAfterFirst;
  volatile StreamObserver<WatchTokenResponse> watcher;
  private final Server server;

  FakeBroker() throws IOException {
    ServerInterceptor capture = new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
        String value = headers.get(AUTHORIZATION);
        callerAuthorization.add(value == null ? "" : value);
        return next.startCall(call, headers);
      }
    };
    server = Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
        .addService(ServerInterceptors.intercept(this, capture))
        .build()
        .start();
  }

  String address() {
    return "127.0.0.1:" + server.getPort();
  }

  static AccessToken token(String value, long lifetimeSeconds) {
    long expires = System.currentTimeMillis() / 1000 + lifetimeSeconds;
    return AccessToken.newBuilder()
        .setToken(value)
        .setTokenType(TokenType.TOKEN_TYPE_BEARER)
        .setExpireTime(Timestamp.newBuilder().setSeconds(expires))
        .build();
  }

  @Override
  public void getToken(GetTokenRequest request, StreamObserver<GetTokenResponse> answer) {
    int n = getTokenCalls.incrementAndGet();
    answer.onNext(GetTokenResponse.newBuilder().setAccessToken(token("get-" + n, lifetimeSeconds)).build());
    answer.onCompleted();
  }

  @Override
  public void watchToken(WatchTokenRequest request, StreamObserver<WatchTokenResponse> answer) {
    int n = watchConnects.incrementAndGet();
    if (n <= watchFailures) {
      answer.onError(Status.UNAVAILABLE.withDescription("scripted failure " + n).asRuntimeException());
      return;
    }
    answer.onNext(WatchTokenResponse.newBuilder().setAccessToken(token("watch-" + n, lifetimeSeconds)).build());
    if (breakAfterFirst) {
      answer.onError(Status.UNAVAILABLE.withDescription("scripted break").asRuntimeException());
      return;
    }
    watcher = answer;
  }

  /** Sends a renewal on the open stream. */
  void renew(String value) {
    watcher.onNext(WatchTokenResponse.newBuilder().setAccessToken(token(value, lifetimeSeconds)).build());
  }

  @Override
  public void authorizeRequest(AuthorizeRequestRequest request, StreamObserver<AuthorizeRequestResponse> answer) {
    authorizeRequests.add(request);
    if (request.getTenant().equals("nope")) {
      answer.onError(Status.NOT_FOUND.withDescription("no tenant").asRuntimeException());
      return;
    }
    answer.onNext(AuthorizeRequestResponse.newBuilder()
        .setAuthorization("DPoP service-token")
        .setDpop("proof;nonce=" + request.getDpopNonce() + ";htm=" + request.getHttpMethod())
        .setTokenType(TokenType.TOKEN_TYPE_DPOP)
        .addHeaders(HttpHeader.newBuilder().setName("x-care").setValue(request.getCareContext().getPatientId()))
        .build());
    answer.onCompleted();
  }

  @Override
  public void authorizeSessionRequest(
      AuthorizeSessionRequestRequest request, StreamObserver<AuthorizeSessionRequestResponse> answer) {
    sessionRequests.add(request);
    answer.onNext(AuthorizeSessionRequestResponse.newBuilder()
        .setAuthorization("DPoP session-token")
        .setDpop("proof;nonce=" + request.getDpopNonce() + ";htm=" + request.getHttpMethod())
        .setTokenType(TokenType.TOKEN_TYPE_DPOP)
        .build());
    answer.onCompleted();
  }

  @Override
  public void close() throws InterruptedException {
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }
}
