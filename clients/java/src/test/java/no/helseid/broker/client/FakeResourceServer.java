/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A resource server on loopback that demands its DPoP nonce like the demo API: a proof without the current
 * nonce gets 401 with a use_dpop_nonce challenge; every answer carries the nonce.
 */
final class FakeResourceServer implements AutoCloseable {
  /** One request as the server saw it. */
  static final class Seen {
    final String method;
    final String authorization;
    final String dpop;
    final String care;
    final String body;

    Seen(String method, String authorization, String dpop, String care, String body) {
      this.method = method;
      this.authorization = authorization;
      this.dpop = dpop;
      this.care = care;
      this.body = body;
    }
  }

  final List<Seen> seen = new CopyOnWriteArrayList<>();
  volatile String nonce = "n1";
  /** Challenge every request, whatever its nonce (to prove the retry happens once only). */
  volatile boolean alwaysChallenge;
  /** The status of a challenge (401, or 400 as some servers answer). */
  volatile int challengeStatus = 401;
  /** When set, a request with the current nonce is answered 403 with this WWW-Authenticate value (if not empty). */
  volatile String forbidden;
  private final HttpServer server;

  FakeResourceServer() throws IOException {
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    server.createContext("/", this::handle);
    server.start();
  }

  String url(String path) {
    return "http://127.0.0.1:" + server.getAddress().getPort() + path;
  }

  private void handle(HttpExchange exchange) throws IOException {
    String body = new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
    String dpop = exchange.getRequestHeaders().getFirst("DPoP");
    seen.add(new Seen(exchange.getRequestMethod(), exchange.getRequestHeaders().getFirst("Authorization"), dpop,
        exchange.getRequestHeaders().getFirst("x-care"), body));
    exchange.getResponseHeaders().set("DPoP-Nonce", nonce);
    byte[] answer;
    int status;
    if (alwaysChallenge || dpop == null || !dpop.contains("nonce=" + nonce + ";")) {
      exchange.getResponseHeaders().add("WWW-Authenticate",
          "DPoP algs=\"ES256\", error=\"use_dpop_nonce\", error_description=\"Resource server requires nonce in DPoP proof\"");
      status = challengeStatus;
      answer = "{\"error\":\"use_dpop_nonce\"}".getBytes(StandardCharsets.UTF_8);
    } else if (forbidden != null) {
      if (!forbidden.isEmpty()) {
        exchange.getResponseHeaders().add("WWW-Authenticate", forbidden);
      }
      status = 403;
      answer = "{\"error\":\"forbidden\"}".getBytes(StandardCharsets.UTF_8);
    } else {
      status = 200;
      answer = ("{\"method\":\"" + exchange.getRequestMethod() + "\",\"body_bytes\":" + body.length() + "}")
          .getBytes(StandardCharsets.UTF_8);
    }
    exchange.sendResponseHeaders(status, answer.length);
    exchange.getResponseBody().write(answer);
    exchange.close();
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
