/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import io.grpc.Channel;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpResponse.BodyHandler;
import java.net.http.HttpResponse.BodySubscriber;
import java.net.http.HttpResponse.BodySubscribers;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import no.helseid.broker.v1.AuthorizeRequestRequest;
import no.helseid.broker.v1.AuthorizeRequestResponse;
import no.helseid.broker.v1.AuthorizeSessionRequestRequest;
import no.helseid.broker.v1.AuthorizeSessionRequestResponse;
import no.helseid.broker.v1.CareContext;
import no.helseid.broker.v1.HttpHeader;
import no.helseid.broker.v1.TokenBrokerServiceGrpc;

/**
 * A {@link HttpClient} wrapper that authorizes every request through the broker: for each request it calls
 * {@code AuthorizeRequest} (tenant, target, method, the absolute URL, the last {@code DPoP-Nonce} seen from the
 * URL's origin, and an optional {@link CareContext}), sets {@code Authorization}, {@code DPoP} (when the answer
 * has one) and every header of the answer's {@code headers}, and sends it. When the server answers {@code 401}
 * or {@code 400} with a DPoP challenge {@code error="use_dpop_nonce"} and a {@code DPoP-Nonce} header, it
 * authorizes and sends the request again, exactly once, with that nonce. The last {@code DPoP-Nonce} of every
 * answer (successful ones too) is remembered per origin, so the next request takes one round trip.
 *
 * <p>When the server answers {@code 403} with a {@code DPoP} or {@code Bearer} challenge
 * {@code error="insufficient_authorization_details"} (an API that needs the trust framework's attest in the
 * token, and the token has none), {@code send} throws a {@link BrokerException} with reason
 * {@value #INSUFFICIENT_AUTHORIZATION_DETAILS} (code {@code PERMISSION_DENIED}, empty domain; the metadata
 * has {@code http_status}, {@code scheme}, {@code url} without its query, and the server's
 * {@code error_description} when it gave one); {@code sendAsync} completes exceptionally with it. Every other
 * {@code 403} is handed back as the answer it is.
 *
 * <p><b>Request bodies must be replayable</b>, since a nonce challenge sends the request twice:
 * {@code BodyPublishers.ofString}, {@code ofByteArray}, {@code ofByteArrays}, {@code ofFile} and
 * {@code noBody} are; {@code ofInputStream} is only when its supplier opens a new stream on each call.
 *
 * <pre>{@code
 * var http = BrokerHttpClient.builder(channel, "demo", "demo-api").build();
 * HttpResponse<String> answer = http.send(
 *     HttpRequest.newBuilder(URI.create(api + "records")).GET().build(), BodyHandlers.ofString());
 * }</pre>
 *
 * <p>Thread-safe; share one per (tenant, target). Broker failures are thrown as {@link BrokerException}.
 */
public final class BrokerHttpClient {
  /** The {@link BrokerException#reason() reason} of a resource server's {@code insufficient_authorization_details}. */
  public static final String INSUFFICIENT_AUTHORIZATION_DETAILS = "INSUFFICIENT_AUTHORIZATION_DETAILS";

  private static final Pattern DPOP_SCHEME = Pattern.compile("(?i)(?:^|,)\\s*DPoP(?:\\s|,|$)");
  private static final Pattern BEARER_SCHEME = Pattern.compile("(?i)(?:^|,)\\s*Bearer(?:\\s|,|$)");
  private static final Pattern NONCE_ERROR = Pattern.compile("(?i)\\berror\\s*=\\s*\"?use_dpop_nonce\"?");
  private static final Pattern INSUFFICIENT_ERROR = Pattern.compile(
      "(?i)\\berror\\s*=\\s*\"?insufficient_authorization_details(?:\"|\\s*,|\\s*$)");
  private static final Pattern ERROR_DESCRIPTION = Pattern.compile(
      "(?i)\\berror_description\\s*=\\s*(?:\"((?:[^\"\\\\]|\\\\.)*)\"|([^\\s,]*))");
  private static final Pattern NEXT_SCHEME = Pattern.compile(",\\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:\\s+[A-Za-z0-9!#$%&'*+.^_`|~-]+\\s*=|\\s*$|\\s*,)");

  private final HttpClient http;
  private final TokenBrokerServiceGrpc.TokenBrokerServiceBlockingStub blockingStub;
  private final TokenBrokerServiceGrpc.TokenBrokerServiceStub asyncStub;
  private final String tenant;
  private final String sessionId;
  private final String target;
  private final Duration rpcTimeout;
  private final Map<String, String> nonces = new ConcurrentHashMap<>();
  private final AtomicLong requests = new AtomicLong();
  private final AtomicLong nonceRetries = new AtomicLong();

  private BrokerHttpClient(Builder b) {
    this.http = b.http != null ? b.http : HttpClient.newHttpClient();
    this.blockingStub = TokenBrokerServiceGrpc.newBlockingStub(b.channel);
    this.asyncStub = TokenBrokerServiceGrpc.newStub(b.channel);
    this.tenant = b.tenant;
    this.sessionId = b.sessionId;
    this.target = b.target;
    this.rpcTimeout = b.rpcTimeout;
  }

  /** A client for the service token of {@code tenant} and {@code target} (AuthorizeRequest). */
  public static Builder builder(Channel channel, String tenant, String target) {
    return new Builder(channel, Objects.requireNonNull(tenant, "tenant"), null, target);
  }

  /** A client for a user session's token for {@code target} (AuthorizeSessionRequest). */
  public static Builder forSession(Channel channel, String sessionId, String target) {
    return new Builder(channel, null, Objects.requireNonNull(sessionId, "sessionId"), target);
  }

  /** The wrapped HTTP client. */
  public HttpClient httpClient() {
    return http;
  }

  /** Sends an authorized request; see the class comment. */
  public <T> HttpResponse<T> send(HttpRequest request, BodyHandler<T> handler)
      throws IOException, InterruptedException {
    return send(request, handler, null);
  }

  /** Sends an authorized request with a care context (the broker renders the API's headers from it). */
  public <T> HttpResponse<T> send(HttpRequest request, BodyHandler<T> handler, CareContext careContext)
      throws IOException, InterruptedException {
    String origin = origin(request.uri());
    Attempt<T> first = new Attempt<>(origin, handler, true);
    HttpResponse<T> response = http.send(authorized(request, authorize(request, nonces.get(origin), careContext)), first);
    requests.incrementAndGet();
    if (first.challengeNonce == null) {
      return first.checked(response);
    }
    nonceRetries.incrementAndGet();
    requests.incrementAndGet();
    Attempt<T> second = new Attempt<>(origin, handler, false);
    return second.checked(
        http.send(authorized(request, authorize(request, first.challengeNonce, careContext)), second));
  }

  /** Sends an authorized request asynchronously (AuthorizeRequest through the async stub). */
  public <T> CompletableFuture<HttpResponse<T>> sendAsync(HttpRequest request, BodyHandler<T> handler) {
    return sendAsync(request, handler, null);
  }

  /** Sends an authorized request with a care context asynchronously. */
  public <T> CompletableFuture<HttpResponse<T>> sendAsync(
      HttpRequest request, BodyHandler<T> handler, CareContext careContext) {
    String origin = origin(request.uri());
    Attempt<T> first = new Attempt<>(origin, handler, true);
    return authorizeAsync(request, nonces.get(origin), careContext)
        .thenCompose(auth -> http.sendAsync(authorized(request, auth), first))
        .thenCompose(response -> {
          requests.incrementAndGet();
          if (first.challengeNonce == null) {
            return CompletableFuture.completedFuture(first.checked(response));
          }
          nonceRetries.incrementAndGet();
          requests.incrementAndGet();
          Attempt<T> second = new Attempt<>(origin, handler, false);
          return authorizeAsync(request, first.challengeNonce, careContext)
              .thenCompose(auth -> http.sendAsync(authorized(request, auth), second))
              .thenApply(second::checked);
        });
  }

  /** The last {@code DPoP-Nonce} seen from the URL's origin. */
  public Optional<String> nonceFor(URI uri) {
    return Optional.ofNullable(nonces.get(origin(uri)));
  }

  /** Requests sent (each nonce retry counts) and nonce retries made, since this client was built. */
  public long requestsSent() {
    return requests.get();
  }

  /** Nonce retries made since this client was built. */
  public long nonceRetries() {
    return nonceRetries.get();
  }

  /** Whether {@code WWW-Authenticate} headers carry a DPoP challenge with {@code error="use_dpop_nonce"}. */
  static boolean isNonceChallenge(List<String> wwwAuthenticate) {
    return challengeParams(wwwAuthenticate, DPOP_SCHEME, NONCE_ERROR) != null;
  }

  /**
   * The scheme ({@code DPoP} or {@code Bearer}) and parameters of the first challenge in {@code WWW-Authenticate}
   * headers with {@code error="insufficient_authorization_details"}, or {@code null}.
   */
  static String[] insufficientAuthorizationDetails(List<String> wwwAuthenticate) {
    String params = challengeParams(wwwAuthenticate, DPOP_SCHEME, INSUFFICIENT_ERROR);
    if (params != null) {
      return new String[] {"DPoP", params};
    }
    params = challengeParams(wwwAuthenticate, BEARER_SCHEME, INSUFFICIENT_ERROR);
    return params == null ? null : new String[] {"Bearer", params};
  }

  /** The parameters of the first challenge of {@code scheme} whose parameters match {@code error}, or null. */
  private static String challengeParams(List<String> wwwAuthenticate, Pattern schemePattern, Pattern error) {
    for (String value : wwwAuthenticate) {
      Matcher scheme = schemePattern.matcher(value);
      while (scheme.find()) {
        String rest = value.substring(scheme.end());
        Matcher next = NEXT_SCHEME.matcher(rest);
        String params = next.find() ? rest.substring(0, next.start()) : rest;
        if (error.matcher(params).find()) {
          return params;
        }
      }
    }
    return null;
  }

  /** The typed error for a {@code 403 insufficient_authorization_details} answer to a request for {@code uri}. */
  static BrokerException insufficientAuthorizationDetailsError(URI uri, String scheme, String params) {
    Map<String, String> metadata = new java.util.LinkedHashMap<>();
    metadata.put("http_status", "403");
    metadata.put("scheme", scheme);
    metadata.put("url", withoutQuery(uri));
    Matcher description = ERROR_DESCRIPTION.matcher(params);
    if (description.find()) {
      String text = description.group(1) != null
          ? description.group(1).replaceAll("\\\\(.)", "$1") : description.group(2);
      if (!text.isEmpty()) {
        metadata.put("error_description", text);
      }
    }
    String message = "the resource server answered 403 insufficient_authorization_details for "
        + withoutQuery(uri) + ": the request needs a care context with the trust framework's attest in the "
        + "token; send it on a user session with a care context (BrokerHttpClient.forSession(...) and "
        + "send(request, handler, careContext), that is AuthorizeSessionRequest or GetSessionToken with "
        + "care_context)" + (metadata.containsKey("error_description")
            ? " (the server said: " + metadata.get("error_description") + ")" : "");
    return BrokerException.local(io.grpc.Status.PERMISSION_DENIED.withDescription(message),
        INSUFFICIENT_AUTHORIZATION_DETAILS, metadata);
  }

  private static String withoutQuery(URI uri) {
    String text = uri.toString();
    int cut = text.length();
    for (char c : new char[] {'?', '#'}) {
      int at = text.indexOf(c);
      if (at >= 0 && at < cut) {
        cut = at;
      }
    }
    return text.substring(0, cut);
  }

  /** {@code scheme://host:port}, lower case, with the default port spelled out. */
  static String origin(URI uri) {
    String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
    String host = uri.getHost() == null ? "" : uri.getHost().toLowerCase(Locale.ROOT);
    int port = uri.getPort();
    if (port < 0) {
      port = scheme.equals("https") ? 443 : scheme.equals("http") ? 80 : -1;
    }
    return scheme + "://" + host + ":" + port;
  }

  private static final class Authorization {
    final String authorization;
    final String dpop;
    final List<HttpHeader> headers;

    Authorization(String authorization, String dpop, List<HttpHeader> headers) {
      this.authorization = authorization;
      this.dpop = dpop;
      this.headers = headers;
    }
  }

  private Authorization authorize(HttpRequest request, String nonce, CareContext care) {
    try {
      if (sessionId != null) {
        AuthorizeSessionRequestResponse r = blockingStub
            .withDeadlineAfter(rpcTimeout.toMillis(), TimeUnit.MILLISECONDS)
            .authorizeSessionRequest(sessionRequest(request, nonce, care));
        return new Authorization(r.getAuthorization(), r.getDpop(), r.getHeadersList());
      }
      AuthorizeRequestResponse r = blockingStub
          .withDeadlineAfter(rpcTimeout.toMillis(), TimeUnit.MILLISECONDS)
          .authorizeRequest(serviceRequest(request, nonce, care));
      return new Authorization(r.getAuthorization(), r.getDpop(), r.getHeadersList());
    } catch (RuntimeException e) {
      throw BrokerException.of(e);
    }
  }

  private CompletableFuture<Authorization> authorizeAsync(HttpRequest request, String nonce, CareContext care) {
    CompletableFuture<Authorization> result = new CompletableFuture<>();
    var stub = asyncStub.withDeadlineAfter(rpcTimeout.toMillis(), TimeUnit.MILLISECONDS);
    if (sessionId != null) {
      stub.authorizeSessionRequest(sessionRequest(request, nonce, care), new Unary<>(result,
          r -> new Authorization(r.getAuthorization(), r.getDpop(), r.getHeadersList())));
    } else {
      stub.authorizeRequest(serviceRequest(request, nonce, care), new Unary<>(result,
          r -> new Authorization(r.getAuthorization(), r.getDpop(), r.getHeadersList())));
    }
    return result;
  }

  private static final class Unary<R> implements StreamObserver<R> {
    private final CompletableFuture<Authorization> result;
    private final java.util.function.Function<R, Authorization> convert;

    Unary(CompletableFuture<Authorization> result, java.util.function.Function<R, Authorization> convert) {
      this.result = result;
      this.convert = convert;
    }

    @Override
    public void onNext(R value) {
      result.complete(convert.apply(value));
    }

    @Override
    public void onError(Throwable error) {
      result.completeExceptionally(BrokerException.of(error));
    }

    @Override
    public void onCompleted() {
      if (!result.isDone()) {
        result.completeExceptionally(new IllegalStateException("the broker answered nothing"));
      }
    }
  }

  private AuthorizeRequestRequest serviceRequest(HttpRequest request, String nonce, CareContext care) {
    AuthorizeRequestRequest.Builder b = AuthorizeRequestRequest.newBuilder()
        .setTenant(tenant)
        .setTarget(target)
        .setHttpMethod(request.method())
        .setUrl(request.uri().toString());
    if (nonce != null) {
      b.setDpopNonce(nonce);
    }
    if (care != null) {
      b.setCareContext(care);
    }
    return b.build();
  }

  private AuthorizeSessionRequestRequest sessionRequest(HttpRequest request, String nonce, CareContext care) {
    AuthorizeSessionRequestRequest.Builder b = AuthorizeSessionRequestRequest.newBuilder()
        .setSessionId(sessionId)
        .setTarget(target)
        .setHttpMethod(request.method())
        .setUrl(request.uri().toString());
    if (nonce != null) {
      b.setDpopNonce(nonce);
    }
    if (care != null) {
      b.setCareContext(care);
    }
    return b.build();
  }

  private static HttpRequest authorized(HttpRequest request, Authorization auth) {
    HttpRequest.Builder b = HttpRequest.newBuilder(request, (name, value) ->
        !name.equalsIgnoreCase("authorization") && !name.equalsIgnoreCase("dpop"));
    b.setHeader("Authorization", auth.authorization);
    if (!auth.dpop.isEmpty()) {
      b.setHeader("DPoP", auth.dpop);
    }
    for (HttpHeader header : auth.headers) {
      b.setHeader(header.getName(), header.getValue());
    }
    return b.build();
  }

  /**
   * One send: remembers the answer's nonce, and discards the body of a nonce challenge it will retry and of an
   * {@code insufficient_authorization_details} refusal it will throw.
   */
  private final class Attempt<T> implements BodyHandler<T> {
    private final String origin;
    private final BodyHandler<T> handler;
    private final boolean mayRetry;
    volatile String challengeNonce;
    volatile String[] insufficient;

    Attempt(String origin, BodyHandler<T> handler, boolean mayRetry) {
      this.origin = origin;
      this.handler = handler;
      this.mayRetry = mayRetry;
    }

    @Override
    public BodySubscriber<T> apply(HttpResponse.ResponseInfo info) {
      HttpHeaders headers = info.headers();
      Optional<String> nonce = headers.firstValue("DPoP-Nonce").filter(v -> !v.isEmpty());
      nonce.ifPresent(v -> nonces.put(origin, v));
      int status = info.statusCode();
      if (mayRetry && nonce.isPresent() && (status == 401 || status == 400)
          && isNonceChallenge(headers.allValues("WWW-Authenticate"))) {
        challengeNonce = nonce.get();
        return BodySubscribers.replacing(null);
      }
      if (status == 403) {
        insufficient = insufficientAuthorizationDetails(headers.allValues("WWW-Authenticate"));
        if (insufficient != null) {
          return BodySubscribers.replacing(null);
        }
      }
      return handler.apply(info);
    }

    /** The answer, or the typed error when it was an {@code insufficient_authorization_details} refusal. */
    HttpResponse<T> checked(HttpResponse<T> response) {
      String[] refusal = insufficient;
      if (refusal != null) {
        throw insufficientAuthorizationDetailsError(response.request().uri(), refusal[0], refusal[1]);
      }
      return response;
    }
  }

  /** Options of a {@link BrokerHttpClient}. */
  public static final class Builder {
    private final Channel channel;
    private final String tenant;
    private final String sessionId;
    private final String target;
    private HttpClient http;
    private Duration rpcTimeout = Duration.ofSeconds(10);

    private Builder(Channel channel, String tenant, String sessionId, String target) {
      this.channel = Objects.requireNonNull(channel, "channel");
      this.tenant = tenant;
      this.sessionId = sessionId;
      this.target = Objects.requireNonNull(target, "target");
    }

    /** The HTTP client to wrap (default {@link HttpClient#newHttpClient()}). */
    public Builder httpClient(HttpClient http) {
      this.http = Objects.requireNonNull(http);
      return this;
    }

    /** The deadline of each AuthorizeRequest (default 10 s). */
    public Builder rpcTimeout(Duration timeout) {
      this.rpcTimeout = Objects.requireNonNull(timeout);
      return this;
    }

    /** The client. */
    public BrokerHttpClient build() {
      return new BrokerHttpClient(this);
    }
  }
}
