/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import io.grpc.Channel;
import io.grpc.Context;
import io.grpc.stub.StreamObserver;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Objects;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;
import no.helseid.broker.v1.AccessToken;
import no.helseid.broker.v1.GetTokenRequest;
import no.helseid.broker.v1.TokenBrokerServiceGrpc;
import no.helseid.broker.v1.WatchTokenRequest;
import no.helseid.broker.v1.WatchTokenResponse;

/**
 * The access token of one (tenant, target), kept in this process: {@link #get()} returns the cached token with
 * no RPC at all. A {@code WatchToken} stream feeds the cache with every renewal the broker makes; when the stream
 * breaks it reconnects with exponential back-off (with jitter), and while it is down a {@link #get()} that finds
 * no usable token calls {@code GetToken} once and caches the answer. A token is never handed out past its
 * {@code expire_time} minus the skew (default 5 s).
 *
 * <pre>{@code
 * try (var tokens = BrokerTokenSource.builder(channel, "demo", "demo-bearer").build()) {
 *   String header = "Bearer " + tokens.get().getToken();
 * }
 * }</pre>
 *
 * <p>Thread-safe. For a DPoP-bound token the proof must still be made per request: use
 * {@link BrokerHttpClient} (AuthorizeRequest) for those.
 */
public final class BrokerTokenSource implements Supplier<AccessToken>, AutoCloseable {
  private final TokenBrokerServiceGrpc.TokenBrokerServiceStub asyncStub;
  private final TokenBrokerServiceGrpc.TokenBrokerServiceBlockingStub blockingStub;
  private final String tenant;
  private final String target;
  private final Duration skew;
  private final Duration initialBackoff;
  private final Duration maxBackoff;
  private final Duration rpcTimeout;
  private final Clock clock;
  private final ScheduledExecutorService scheduler;
  private final Object fetchLock = new Object();
  private final Object backoffLock = new Object();
  private final AtomicLong watchMessages = new AtomicLong();
  private final AtomicLong watchConnects = new AtomicLong();
  private final AtomicLong getTokenCalls = new AtomicLong();

  private volatile Cached cached;
  private volatile boolean streaming;
  private volatile boolean closed;
  private volatile Context.CancellableContext watchContext;
  private volatile BrokerException lastStreamError;
  private Duration backoff;

  private static final class Cached {
    final AccessToken token;
    final long usableUntilMillis;

    Cached(AccessToken token, long usableUntilMillis) {
      this.token = token;
      this.usableUntilMillis = usableUntilMillis;
    }
  }

  private BrokerTokenSource(Builder b) {
    this.asyncStub = TokenBrokerServiceGrpc.newStub(b.channel);
    this.blockingStub = TokenBrokerServiceGrpc.newBlockingStub(b.channel);
    this.tenant = b.tenant;
    this.target = b.target;
    this.skew = b.skew;
    this.initialBackoff = b.initialBackoff;
    this.maxBackoff = b.maxBackoff;
    this.rpcTimeout = b.rpcTimeout;
    this.clock = b.clock;
    this.backoff = initialBackoff;
    this.scheduler = Executors.newSingleThreadScheduledExecutor(runnable -> {
      Thread thread = new Thread(runnable, "broker-token-source-" + tenant + "-" + target);
      thread.setDaemon(true);
      return thread;
    });
    if (b.watch) {
      scheduler.execute(this::connect);
    }
  }

  /** A builder for the token of {@code tenant} and {@code target}, over {@code channel}. */
  public static Builder builder(Channel channel, String tenant, String target) {
    return new Builder(channel, tenant, target);
  }

  /**
   * The current access token: the cached one (no RPC) while it is usable, else one from {@code GetToken}
   * (cached in turn).
   *
   * @throws BrokerException when no usable token is cached and GetToken fails
   */
  @Override
  public AccessToken get() {
    Cached current = cached;
    if (current != null && clock.millis() < current.usableUntilMillis) {
      return current.token;
    }
    return fetch();
  }

  /** The token string of {@link #get()}. */
  public String token() {
    return get().getToken();
  }

  private AccessToken fetch() {
    synchronized (fetchLock) {
      Cached current = cached;
      if (current != null && clock.millis() < current.usableUntilMillis) {
        return current.token; // another thread fetched it while this one waited
      }
      if (closed) {
        throw new IllegalStateException("the token source is closed");
      }
      try {
        getTokenCalls.incrementAndGet();
        AccessToken token = blockingStub
            .withDeadlineAfter(rpcTimeout.toMillis(), TimeUnit.MILLISECONDS)
            .getToken(GetTokenRequest.newBuilder().setTenant(tenant).setTarget(target).build())
            .getAccessToken();
        offer(token);
        return token;
      } catch (RuntimeException e) {
        throw BrokerException.of(e);
      }
    }
  }

  private void offer(AccessToken token) {
    long expires = token.getExpireTime().getSeconds() * 1000L + token.getExpireTime().getNanos() / 1_000_000L;
    long usableUntil = expires - skew.toMillis();
    Cached current = cached;
    if (current == null || usableUntil >= current.usableUntilMillis || clock.millis() >= current.usableUntilMillis) {
      cached = new Cached(token, usableUntil);
    }
  }

  private void connect() {
    if (closed) {
      return;
    }
    watchConnects.incrementAndGet();
    Context.CancellableContext context = Context.current().withCancellation();
    watchContext = context;
    context.run(() -> asyncStub.watchToken(
        WatchTokenRequest.newBuilder().setTenant(tenant).setTarget(target).build(),
        new StreamObserver<WatchTokenResponse>() {
          @Override
          public void onNext(WatchTokenResponse response) {
            streaming = true;
            lastStreamError = null;
            watchMessages.incrementAndGet();
            synchronized (backoffLock) {
              backoff = initialBackoff;
            }
            offer(response.getAccessToken());
          }

          @Override
          public void onError(Throwable error) {
            streaming = false;
            if (!closed) {
              lastStreamError = BrokerException.of(error);
            }
            reconnectLater();
          }

          @Override
          public void onCompleted() {
            streaming = false;
            reconnectLater();
          }
        }));
  }

  private void reconnectLater() {
    if (closed) {
      return;
    }
    long delayMillis;
    synchronized (backoffLock) {
      delayMillis = backoff.toMillis();
      backoff = backoff.multipliedBy(2).compareTo(maxBackoff) > 0 ? maxBackoff : backoff.multipliedBy(2);
    }
    // full jitter over the upper half, so that many clients of a restarted broker spread out
    long jittered = delayMillis / 2 + ThreadLocalRandom.current().nextLong(delayMillis / 2 + 1);
    try {
      scheduler.schedule(this::connect, jittered, TimeUnit.MILLISECONDS);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      // closed meanwhile
    }
  }

  /** Whether the WatchToken stream is up (it has delivered a token since it last connected). */
  public boolean isStreaming() {
    return streaming;
  }

  /** The error that last broke the WatchToken stream, while it is down; empty while it streams. */
  public java.util.Optional<BrokerException> lastStreamError() {
    return java.util.Optional.ofNullable(lastStreamError);
  }

  /** Counters for tests and monitoring: tokens received on the stream, stream connects, GetToken calls. */
  public Stats stats() {
    return new Stats(watchMessages.get(), watchConnects.get(), getTokenCalls.get());
  }

  /** Counters of a token source. */
  public static final class Stats {
    /** Tokens received on the WatchToken stream. */
    public final long watchMessages;
    /** WatchToken connects (the first one and every reconnect). */
    public final long watchConnects;
    /** GetToken calls made (the fallback when no usable token was cached). */
    public final long getTokenCalls;

    Stats(long watchMessages, long watchConnects, long getTokenCalls) {
      this.watchMessages = watchMessages;
      this.watchConnects = watchConnects;
      this.getTokenCalls = getTokenCalls;
    }

    @Override
    public String toString() {
      return "Stats{watchMessages=" + watchMessages + ", watchConnects=" + watchConnects
          + ", getTokenCalls=" + getTokenCalls + "}";
    }
  }

  /** Hangs up the stream and stops reconnecting; the channel stays open (it is the caller's). */
  @Override
  public void close() {
    closed = true;
    Context.CancellableContext context = watchContext;
    if (context != null) {
      context.cancel(null);
    }
    scheduler.shutdownNow();
  }

  /** Options of a token source. */
  public static final class Builder {
    private final Channel channel;
    private final String tenant;
    private final String target;
    private Duration skew = Duration.ofSeconds(5);
    private Duration initialBackoff = Duration.ofMillis(500);
    private Duration maxBackoff = Duration.ofSeconds(30);
    private Duration rpcTimeout = Duration.ofSeconds(30);
    private boolean watch = true;
    private Clock clock = Clock.systemUTC();

    private Builder(Channel channel, String tenant, String target) {
      this.channel = Objects.requireNonNull(channel, "channel");
      this.tenant = Objects.requireNonNull(tenant, "tenant");
      this.target = Objects.requireNonNull(target, "target");
    }

    /** A token is not handed out once less than this is left of its life (default 5 s). */
    public Builder skew(Duration skew) {
      this.skew = Objects.requireNonNull(skew);
      return this;
    }

    /** The first and the longest wait before reconnecting the stream (default 0.5 s and 30 s, doubling). */
    public Builder backoff(Duration initial, Duration max) {
      if (initial.isNegative() || initial.isZero() || max.compareTo(initial) < 0) {
        throw new IllegalArgumentException("back-off must be positive and max >= initial");
      }
      this.initialBackoff = initial;
      this.maxBackoff = max;
      return this;
    }

    /** The deadline of a GetToken fallback (default 30 s). */
    public Builder rpcTimeout(Duration timeout) {
      this.rpcTimeout = Objects.requireNonNull(timeout);
      return this;
    }

    /** Whether to keep a WatchToken stream (default true); without it every expiry costs one GetToken. */
    public Builder watch(boolean watch) {
      this.watch = watch;
      return this;
    }

    /** The clock that decides whether a cached token is still usable (tests). */
    public Builder clock(Clock clock) {
      this.clock = Objects.requireNonNull(clock);
      return this;
    }

    /** Starts the source (its stream connects in the background). */
    public BrokerTokenSource build() {
      return new BrokerTokenSource(this);
    }
  }

  /** When the cached token stops being handed out; {@link Instant#EPOCH} when none is cached. */
  public Instant usableUntil() {
    Cached current = cached;
    return current == null ? Instant.EPOCH : Instant.ofEpochMilli(current.usableUntilMillis);
  }
}
