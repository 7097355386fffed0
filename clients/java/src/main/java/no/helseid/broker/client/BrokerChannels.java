/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import io.grpc.CallCredentials;
import io.grpc.ChannelCredentials;
import io.grpc.CompositeChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.TlsChannelCredentials;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Executor;

/**
 * Channels to the broker: the address from {@value #ADDR_ENV} (else {@value #DEFAULT_ADDRESS}), TLS when asked
 * for, and the caller's credential from {@value #CREDENTIAL_ENV} sent as gRPC metadata
 * {@code authorization: Bearer <credential>} on every call.
 *
 * <p>A credential never travels in plaintext to another machine: a plaintext channel with a credential is only
 * built for a loopback address (127.0.0.0/8, ::1, localhost).
 *
 * <pre>{@code
 * ManagedChannel channel = BrokerChannels.fromEnvironment();           // plaintext or TLS from the environment
 * ManagedChannel tls = BrokerChannels.builder().address("broker.internal:443").tls(true)
 *     .trustCertificates(new File("ca.pem")).credential(System.getenv("MY_SECRET")).build();
 * }</pre>
 *
 * <p>Environment variables read by {@link #fromEnvironment()}: {@value #ADDR_ENV}, {@value #CREDENTIAL_ENV},
 * {@value #TLS_ENV} ({@code true}/{@code 1} for TLS with the system's trusted roots), {@value #CA_FILE_ENV}
 * (PEM roots; implies TLS), {@value #CERT_FILE_ENV} and {@value #KEY_FILE_ENV} (a client certificate and its
 * PKCS#8 key for mutual TLS; imply TLS).
 */
public final class BrokerChannels {
  /** The broker's address, {@code host:port} (or any gRPC target such as {@code dns:///host:port}). */
  public static final String ADDR_ENV = "HELSEID_BROKER_ADDR";
  /** The caller's credential, sent as {@code authorization: Bearer <credential>}. */
  public static final String CREDENTIAL_ENV = "HELSEID_BROKER_CREDENTIAL";
  /** {@code true} or {@code 1}: connect with TLS. */
  public static final String TLS_ENV = "HELSEID_BROKER_TLS";
  /** A PEM file of the roots to trust (else the system's). */
  public static final String CA_FILE_ENV = "HELSEID_BROKER_CA_FILE";
  /** A PEM client certificate chain for mutual TLS. */
  public static final String CERT_FILE_ENV = "HELSEID_BROKER_CERT_FILE";
  /** The PEM (PKCS#8) private key of the client certificate. */
  public static final String KEY_FILE_ENV = "HELSEID_BROKER_KEY_FILE";
  /** The address when {@value #ADDR_ENV} is not set. */
  public static final String DEFAULT_ADDRESS = "127.0.0.1:50051";

  private BrokerChannels() {}

  /** A channel configured from the process environment (see the class comment). */
  public static ManagedChannel fromEnvironment() {
    return builderFromEnvironment(System.getenv()).build();
  }

  /** A builder preset from the given environment (see the class comment); change anything before build(). */
  public static Builder builderFromEnvironment(Map<String, String> env) {
    Builder builder = builder();
    String address = env.get(ADDR_ENV);
    if (address != null && !address.isBlank()) {
      builder.address(address.trim());
    }
    String credential = env.get(CREDENTIAL_ENV);
    if (credential != null && !credential.isBlank()) {
      builder.credential(credential.trim());
    }
    String tls = env.getOrDefault(TLS_ENV, "").trim().toLowerCase(Locale.ROOT);
    if (tls.equals("1") || tls.equals("true") || tls.equals("yes")) {
      builder.tls(true);
    }
    String ca = env.get(CA_FILE_ENV);
    if (ca != null && !ca.isBlank()) {
      builder.trustCertificates(new File(ca.trim()));
    }
    String cert = env.get(CERT_FILE_ENV);
    String key = env.get(KEY_FILE_ENV);
    if (cert != null && !cert.isBlank() && key != null && !key.isBlank()) {
      builder.clientCertificate(new File(cert.trim()), new File(key.trim()));
    } else if ((cert != null && !cert.isBlank()) || (key != null && !key.isBlank())) {
      throw new IllegalArgumentException(CERT_FILE_ENV + " and " + KEY_FILE_ENV + " go together: set both or neither");
    }
    return builder;
  }

  /** A builder with the defaults: {@value #DEFAULT_ADDRESS}, plaintext, no credential. */
  public static Builder builder() {
    return new Builder();
  }

  /** The caller credential as gRPC call credentials: metadata {@code authorization: Bearer <credential>}. */
  public static CallCredentials bearerCredential(String credential) {
    return new BearerCallCredentials(credential);
  }

  /** Whether a {@code host:port} (or gRPC target) names this machine: 127.0.0.0/8, ::1 or localhost. */
  public static boolean isLoopback(String target) {
    String host = hostOf(target);
    if (host.equalsIgnoreCase("localhost")) {
      return true;
    }
    if (!host.matches("[0-9.]+") && !host.contains(":")) {
      return false; // a name: never resolved here, so never trusted as loopback
    }
    try {
      return InetAddress.getByName(host).isLoopbackAddress();
    } catch (UnknownHostException e) {
      return false;
    }
  }

  static String hostOf(String target) {
    String rest = target;
    int scheme = rest.indexOf(":///");
    if (scheme >= 0) {
      rest = rest.substring(scheme + 4);
    }
    if (rest.startsWith("[")) {
      int end = rest.indexOf(']');
      return end > 0 ? rest.substring(1, end) : rest;
    }
    int colon = rest.lastIndexOf(':');
    if (colon >= 0 && rest.indexOf(':') == colon) {
      return rest.substring(0, colon);
    }
    return rest; // no port, or a bare IPv6 address
  }

  /** Builds a channel to the broker. */
  public static final class Builder {
    private String address = DEFAULT_ADDRESS;
    private String credential;
    private boolean tls;
    private File trustCertificates;
    private File clientCertificate;
    private File clientKey;
    private String authority;

    private Builder() {}

    /** The broker's address: {@code host:port}, or any gRPC target. */
    public Builder address(String address) {
      this.address = address;
      return this;
    }

    /** The caller's credential (sent as {@code authorization: Bearer <credential>}); null for none. */
    public Builder credential(String credential) {
      this.credential = credential;
      return this;
    }

    /** Connect with TLS (the system's trusted roots unless {@link #trustCertificates(File)} is given). */
    public Builder tls(boolean tls) {
      this.tls = tls;
      return this;
    }

    /** PEM roots to trust; implies TLS. */
    public Builder trustCertificates(File pem) {
      this.trustCertificates = pem;
      this.tls = true;
      return this;
    }

    /** A client certificate chain and its PKCS#8 key (PEM) for mutual TLS; implies TLS. */
    public Builder clientCertificate(File certificateChain, File privateKey) {
      this.clientCertificate = certificateChain;
      this.clientKey = privateKey;
      this.tls = true;
      return this;
    }

    /** The authority (TLS server name) to use instead of the address's host. */
    public Builder overrideAuthority(String authority) {
      this.authority = authority;
      return this;
    }

    /**
     * The channel.
     *
     * @throws IllegalArgumentException for a credential over plaintext to a non-loopback address
     */
    public ManagedChannel build() {
      boolean hasCredential = credential != null && !credential.isEmpty();
      if (!tls && hasCredential && !isLoopback(address)) {
        throw new IllegalArgumentException(
            "refusing to send the broker credential in plaintext to " + address
                + ": use TLS (" + TLS_ENV + "=true) or a loopback address");
      }
      ChannelCredentials channelCredentials;
      if (tls) {
        TlsChannelCredentials.Builder tlsBuilder = TlsChannelCredentials.newBuilder();
        try {
          if (trustCertificates != null) {
            tlsBuilder.trustManager(trustCertificates);
          }
          if (clientCertificate != null) {
            tlsBuilder.keyManager(clientCertificate, clientKey);
          }
        } catch (IOException e) {
          throw new UncheckedIOException("cannot read the broker's TLS files", e);
        }
        channelCredentials = tlsBuilder.build();
      } else {
        channelCredentials = InsecureChannelCredentials.create();
      }
      if (hasCredential) {
        channelCredentials = CompositeChannelCredentials.create(channelCredentials, bearerCredential(credential));
      }
      var builder = Grpc.newChannelBuilder(address, channelCredentials);
      if (authority != null) {
        builder.overrideAuthority(authority);
      }
      return builder.build();
    }
  }

  private static final class BearerCallCredentials extends CallCredentials {
    private static final Metadata.Key<String> AUTHORIZATION =
        Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
    private final String value;

    BearerCallCredentials(String credential) {
      if (credential == null || credential.isEmpty()) {
        throw new IllegalArgumentException("the broker credential is empty");
      }
      this.value = "Bearer " + credential;
    }

    @Override
    public void applyRequestMetadata(RequestInfo info, Executor executor, MetadataApplier applier) {
      if (info.getSecurityLevel() != io.grpc.SecurityLevel.PRIVACY_AND_INTEGRITY && !isLoopback(info.getAuthority())) {
        applier.fail(Status.UNAUTHENTICATED.withDescription(
            "refusing to send the broker credential over plaintext to " + info.getAuthority()));
        return;
      }
      Metadata headers = new Metadata();
      headers.put(AUTHORIZATION, value);
      applier.apply(headers);
    }

    @Override
    public String toString() {
      return "BearerCallCredentials[redacted]";
    }
  }
}
