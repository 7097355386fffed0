/**
 * `TokenSource`: keeps one target's access token locally, fed by the broker's `WatchToken` stream, so that
 * `await source.token()` on a cached token costs no RPC. While the stream is down it reconnects with
 * exponential back-off (and jitter) and `token()` falls back to `GetToken`. It never hands out a token past
 * its `expire_time` minus `skewMs`.
 */
import type { ClientReadableStream } from "@grpc/grpc-js";

import {
  type AccessToken,
  GetTokenRequest,
  type TokenBrokerServiceClient,
  WatchTokenRequest,
  type WatchTokenResponse,
} from "./gen/broker/v1/token_broker_service.js";
import { connect, type ConnectOptions, DEFAULT_DEADLINE_MS, unary } from "./connection.js";
import { BrokerError } from "./errors.js";

export interface TokenSourceOptions extends ConnectOptions {
  tenant: string;
  target: string;
  /** A client to share; default: `connect(options)`, closed by `close()`. */
  client?: TokenBrokerServiceClient;
  /** A token is handed out only while it has more than this left (default 5000 ms). */
  skewMs?: number;
  /** Back-off of the stream's reconnects: first and longest delay (default 250 ms and 30 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long `token()` waits for a starting stream's first token before calling GetToken (default 2 s). */
  streamWaitMs?: number;
  /** Deadline of a GetToken call (default 10 s). */
  deadlineMs?: number;
}

/** What the source did, for tests and monitoring. */
export interface TokenSourceStats {
  /** `token()` calls answered from the cache, without an RPC. */
  cacheHits: number;
  /** GetToken calls made (the fallback). */
  getTokenCalls: number;
  /** WatchToken streams opened (the first and every reconnect). */
  streamsOpened: number;
  /** Tokens received on a stream. */
  streamTokens: number;
}

type StreamState = "idle" | "connecting" | "open" | "backoff" | "closed";

export class TokenSource {
  readonly tenant: string;
  readonly target: string;
  readonly stats: TokenSourceStats = { cacheHits: 0, getTokenCalls: 0, streamsOpened: 0, streamTokens: 0 };

  private readonly client: TokenBrokerServiceClient;
  private readonly ownsClient: boolean;
  private readonly skewMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly streamWaitMs: number;
  private readonly deadlineMs: number;

  private cached: AccessToken | undefined;
  private cachedUntil = 0; // epoch ms after which the cached token is not handed out
  private state: StreamState = "idle";
  private stream: ClientReadableStream<WatchTokenResponse> | undefined;
  private backoffMs: number;
  private timer: NodeJS.Timeout | undefined;
  private fetching: Promise<AccessToken> | undefined;
  private waiters: Array<() => void> = [];
  private lastStreamError: unknown;

  constructor(options: TokenSourceOptions) {
    this.tenant = options.tenant;
    this.target = options.target;
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? connect(options);
    this.skewMs = options.skewMs ?? 5_000;
    this.minBackoffMs = options.minBackoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.streamWaitMs = options.streamWaitMs ?? 2_000;
    this.deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    this.backoffMs = this.minBackoffMs;
  }

  /** The access token string: from the cache when valid (no RPC), else from the stream or GetToken. */
  async token(): Promise<string> {
    return (await this.accessToken()).token;
  }

  /** The whole `AccessToken` (type, expiry, scopes, ...), under the same rules as `token()`. */
  async accessToken(): Promise<AccessToken> {
    const cached = this.valid();
    if (cached && this.state !== "closed") {
      this.stats.cacheHits++;
      return cached;
    }
    if (this.state === "closed") {
      throw new Error("TokenSource is closed");
    }
    if (this.state === "idle") {
      this.start();
    }
    if (this.state === "connecting") {
      await this.waitForStream();
      const fromStream = this.valid();
      if (fromStream) {
        return fromStream;
      }
    }
    return this.getToken();
  }

  /** The cached token while it may be handed out, else `undefined`; never makes an RPC. */
  peek(): AccessToken | undefined {
    return this.valid();
  }

  /** Opens the WatchToken stream now (`token()` does on first use). */
  start(): void {
    if (this.state === "idle" || this.state === "backoff") {
      this.openStream();
    }
  }

  /** Ends the stream and timers; closes the connection if the source opened it. */
  close(): void {
    if (this.state === "closed") {
      return;
    }
    this.state = "closed";
    clearTimeout(this.timer);
    this.stream?.cancel();
    this.stream = undefined;
    this.wake();
    if (this.ownsClient) {
      this.client.close();
    }
  }

  private valid(): AccessToken | undefined {
    return this.cached !== undefined && Date.now() < this.cachedUntil ? this.cached : undefined;
  }

  private store(token: AccessToken | undefined): void {
    if (!token?.token || !token.expireTime) {
      return;
    }
    const until = token.expireTime.getTime() - this.skewMs;
    if (this.cached === undefined || until >= this.cachedUntil || Date.now() >= this.cachedUntil) {
      this.cached = token;
      this.cachedUntil = until;
    }
  }

  private openStream(): void {
    this.state = "connecting";
    this.stats.streamsOpened++;
    const stream = this.client.watchToken(WatchTokenRequest.fromPartial({ tenant: this.tenant, target: this.target }));
    this.stream = stream;
    stream.on("data", (message: WatchTokenResponse) => {
      if (this.stream !== stream) {
        return;
      }
      this.stats.streamTokens++;
      this.store(message.accessToken);
      this.state = "open";
      this.backoffMs = this.minBackoffMs; // a working stream resets the back-off
      this.wake();
    });
    const down = (error?: unknown) => {
      if (this.stream !== stream || this.state === "closed") {
        return;
      }
      this.stream = undefined;
      this.lastStreamError = error;
      this.state = "backoff";
      this.wake();
      const delay = this.backoffMs * (0.5 + Math.random() / 2);
      this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
      this.timer = setTimeout(() => {
        if (this.state === "backoff") {
          this.openStream();
        }
      }, delay);
      this.timer.unref();
    };
    stream.on("error", (error: unknown) => down(error));
    stream.on("end", () => down());
  }

  /** Waits until the starting stream delivers a token or fails, at most `streamWaitMs`. */
  private waitForStream(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.streamWaitMs);
      timer.unref();
      const self = this;
      function done() {
        clearTimeout(timer);
        self.waiters = self.waiters.filter((w) => w !== done);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      w();
    }
  }

  /** GetToken, shared by concurrent callers. */
  private getToken(): Promise<AccessToken> {
    if (this.fetching === undefined) {
      this.stats.getTokenCalls++;
      const request = GetTokenRequest.fromPartial({
        tenant: this.tenant,
        target: this.target,
        minRemainingLifetime: { seconds: Math.ceil(this.skewMs / 1000), nanos: 0 },
      });
      this.fetching = unary(this.client, this.client.getToken, request, this.deadlineMs)
        .then((response) => {
          const token = response.accessToken;
          if (!token?.token) {
            throw new BrokerError(13, "GetToken answered without a token");
          }
          this.store(token);
          return this.valid() ?? token;
        })
        .finally(() => {
          this.fetching = undefined;
        });
    }
    return this.fetching;
  }

  /** The last error the stream ended with, if it is down (for diagnostics). */
  get streamError(): unknown {
    return this.state === "backoff" ? this.lastStreamError : undefined;
  }
}
