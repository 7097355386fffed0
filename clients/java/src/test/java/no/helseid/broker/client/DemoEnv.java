/*
 * Copyright the HelseID token broker authors. Licensed under the Apache License, Version 2.0.
 */
package no.helseid.broker.client;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The environment of a running broker with the demo API (what tests/clients/runner.py sets). */
final class DemoEnv {
  final String address = require("HELSEID_BROKER_ADDR");
  final String apiUrl = require("DEMO_API_URL");
  final String bearerUrl = require("DEMO_BEARER_URL");
  final String statsUrl = require("DEMO_STATS_URL");
  final String rotateUrl = require("DEMO_ROTATE_URL");
  final String tenant = require("DEMO_TENANT");
  final String target = require("DEMO_TARGET");
  final String bearerTarget = require("DEMO_BEARER_TARGET");
  private final HttpClient plain = HttpClient.newHttpClient();

  static String require(String name) {
    String value = System.getenv(name);
    if (value == null || value.isBlank()) {
      fail(name + " is not set: these tests need a running broker with the demo API. Run them through "
          + "`pytest tests/clients/test_java_client.py`, or start `python -m broker run --demo-token-lifetime 20` "
          + "and set HELSEID_BROKER_ADDR, DEMO_API_URL, DEMO_BEARER_URL, DEMO_STATS_URL, DEMO_ROTATE_URL, "
          + "DEMO_TENANT, DEMO_TARGET and DEMO_BEARER_TARGET (see clients/java/README.md)");
    }
    return value.trim();
  }

  /** The demo API's counters: requests, nonce_challenges, accepted, rejected. */
  long stat(String name) throws IOException, InterruptedException {
    String body = plain.send(HttpRequest.newBuilder(URI.create(statsUrl)).GET().build(),
        HttpResponse.BodyHandlers.ofString()).body();
    int start = body.indexOf("\"demo_api\"");
    Matcher m = Pattern.compile("\"" + Pattern.quote(name) + "\"\\s*:\\s*(\\d+)").matcher(body);
    if (start < 0 || !m.find(start)) {
      fail("no demo_api." + name + " in " + body);
    }
    return Long.parseLong(m.group(1));
  }

  /** Makes the demo API take a new nonce at once. */
  void rotateNonce() throws IOException, InterruptedException {
    int status = plain.send(HttpRequest.newBuilder(URI.create(rotateUrl)).POST(HttpRequest.BodyPublishers.noBody()).build(),
        HttpResponse.BodyHandlers.discarding()).statusCode();
    if (status / 100 != 2) {
      fail("rotating the demo API's nonce answered " + status);
    }
  }

  /** A JSON string field of a flat answer. */
  static String field(String json, String name) {
    Matcher m = Pattern.compile("\"" + Pattern.quote(name) + "\"\\s*:\\s*(\"(?:[^\"\\\\]|\\\\.)*\"|[-0-9.]+|true|false|null)").matcher(json);
    if (!m.find()) {
      fail("no " + name + " in " + json);
    }
    String raw = m.group(1);
    return raw.startsWith("\"") ? raw.substring(1, raw.length() - 1) : raw;
  }
}
