/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;

/**
 * A refusal or failure of the broker, as a typed value: the gRPC {@link #status() status}, the broker's
 * {@link #reason() reason} (the {@code google.rpc.ErrorInfo} of domain {@code broker.helseid}, such as
 * {@code TENANT_NOT_FOUND} or {@code URL_NOT_ALLOWED}), its metadata and the {@link #retryDelay() retry
 * delay} of a {@code google.rpc.RetryInfo}, all read from the status details ({@code grpc-status-details-bin}).
 *
 * <p>Unchecked: every helper of this library throws it in place of the {@link StatusRuntimeException} the
 * generated stubs throw; {@link #of(Throwable)} converts one by hand.
 */
public final class BrokerException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** The {@code ErrorInfo.domain} of the broker's errors. */
  public static final String DOMAIN = "broker.helseid";

  private final transient Status status;
  private final String reason;
  private final String domain;
  private final Map<String, String> metadata;
  private final transient Duration retryDelay;

  private BrokerException(
      Status status,
      String reason,
      String domain,
      Map<String, String> metadata,
      Duration retryDelay,
      Throwable cause) {
    super(message(status, reason), cause);
    this.status = status;
    this.reason = reason;
    this.domain = domain;
    this.metadata = Map.copyOf(metadata);
    this.retryDelay = retryDelay;
  }

  private static String message(Status status, String reason) {
    StringBuilder text = new StringBuilder(status.getCode().name());
    if (!reason.isEmpty() && !reason.equals(status.getCode().name())) {
      text.append(" (").append(reason).append(')');
    }
    if (status.getDescription() != null) {
      text.append(": ").append(status.getDescription());
    }
    return text.toString();
  }

  /**
   * The exception for a failed call: a {@link BrokerException} stays as it is; a gRPC status exception is read
   * with its details; anything else becomes {@code UNKNOWN} with an empty reason.
   */
  public static BrokerException of(Throwable error) {
    if (error instanceof BrokerException) {
      return (BrokerException) error;
    }
    Status status = Status.fromThrowable(error);
    String reason = "";
    String domain = "";
    Map<String, String> metadata = Map.of();
    Duration retryDelay = null;
    com.google.rpc.Status details = null;
    if (error instanceof StatusRuntimeException || error instanceof StatusException) {
      details = StatusProto.fromThrowable(error);
    }
    if (details != null) {
      for (Any detail : details.getDetailsList()) {
        try {
          if (detail.is(ErrorInfo.class)) {
            ErrorInfo info = detail.unpack(ErrorInfo.class);
            reason = info.getReason();
            domain = info.getDomain();
            metadata = info.getMetadataMap();
          } else if (detail.is(RetryInfo.class)) {
            com.google.protobuf.Duration delay = detail.unpack(RetryInfo.class).getRetryDelay();
            retryDelay = Duration.ofSeconds(delay.getSeconds(), delay.getNanos());
          }
        } catch (InvalidProtocolBufferException malformed) {
          // a detail that does not parse is left out; the status itself still says what happened
        }
      }
    }
    return new BrokerException(status, reason, domain, metadata, retryDelay, error);
  }

  /**
   * An error the client makes itself from what it saw (not from a gRPC call), such as a resource server's
   * {@code insufficient_authorization_details}: empty domain, no retry delay, no cause.
   */
  static BrokerException local(Status status, String reason, Map<String, String> metadata) {
    return new BrokerException(status, reason, "", metadata, null, null);
  }

  /** The gRPC status (code and description). */
  public Status status() {
    return status;
  }

  /** The gRPC status code. */
  public Status.Code code() {
    return status.getCode();
  }

  /** The broker's {@code ErrorInfo.reason}, such as {@code TENANT_NOT_FOUND}; empty when the status had none. */
  public String reason() {
    return reason;
  }

  /** The {@code ErrorInfo.domain}: {@value #DOMAIN} for the broker's own errors, else empty. */
  public String domain() {
    return domain;
  }

  /** The {@code ErrorInfo.metadata}: every value the message names (such as {@code caller}, {@code incident}). */
  public Map<String, String> metadata() {
    return metadata;
  }

  /** The {@code RetryInfo.retry_delay}: how long to wait before trying again, when the broker said so. */
  public Optional<Duration> retryDelay() {
    return Optional.ofNullable(retryDelay);
  }
}
