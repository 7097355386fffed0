// The client's benchmark: `npm run bench` against a running broker and demo API (the same environment
// variables as the tests: HELSEID_BROKER_ADDR, DEMO_API_URL, DEMO_TENANT, DEMO_TARGET).
//   (a) a cached token through the local TokenSource: calls/s and ns per call;
//   (b) requests/s through the fetch wrapper against the demo API, next to the same requests sent "by hand"
//       (one AuthorizeRequest per request on the generated stub, the nonce kept by the loop): the overhead;
//   (c) the wrapper's own work per request, with an in-process broker and transport that answer at once.
// BENCH_SECONDS (default 5): (b) runs that many interleaved one-second rounds of each variant.
import {
  AuthorizeRequestRequest,
  connect,
  createFetch,
  type TokenBrokerServiceClient,
  TokenSource,
  unary,
} from "../src/index.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set (see README.md, "Benchmark")`);
    process.exit(2);
  }
  return value;
}

const tenant = process.env.DEMO_TENANT || "demo";
const target = process.env.DEMO_TARGET || "demo-api";
const apiUrl = new URL("bench", env("DEMO_API_URL")).toString();
env("HELSEID_BROKER_ADDR");
const seconds = Number(process.env.BENCH_SECONDS || 5);
const client = connect();

async function cachedToken(): Promise<void> {
  const source = new TokenSource({ client, tenant, target });
  await source.token();
  for (let i = 0; i < 100_000; i++) await source.token(); // warm-up
  const rpcs = source.stats.getTokenCalls + source.stats.streamsOpened;
  const n = 2_000_000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await source.token();
  const ns = Number(process.hrtime.bigint() - start);
  const extra = source.stats.getTokenCalls + source.stats.streamsOpened - rpcs;
  source.close();
  console.log(
    `(a) cached token (await source.token()): ${fmt(n / (ns / 1e9))} calls/s, ${(ns / n).toFixed(0)} ns/call, ` +
      `${extra} RPCs during ${n} calls`,
  );
}

/** Runs `one` for `ms` milliseconds; returns how many calls and how long they took in seconds. */
async function run(one: () => Promise<void>, ms: number): Promise<[number, number]> {
  let n = 0;
  const end = Date.now() + ms;
  const start = process.hrtime.bigint();
  while (Date.now() < end) {
    await one();
    n++;
  }
  return [n, Number(process.hrtime.bigint() - start) / 1e9];
}

/** Interleaved one-second rounds of each variant, so that drift of the machine hits both alike. */
async function compare(variants: Array<[string, () => Promise<void>]>): Promise<number[]> {
  for (const [, one] of variants) for (let i = 0; i < 20; i++) await one(); // warm-up (and the first nonce)
  const totals = variants.map(() => [0, 0]);
  for (let round = 0; round < seconds; round++) {
    for (let v = 0; v < variants.length; v++) {
      const [n, s] = await run(variants[v][1], 1000);
      totals[v][0] += n;
      totals[v][1] += s;
    }
  }
  return variants.map(([label], v) => {
    const [n, s] = totals[v];
    const rate = n / s;
    console.log(`${label}: ${fmt(rate)} requests/s, ${(1e6 / rate).toFixed(0)} µs/request (${n} in ${s.toFixed(1)} s)`);
    return rate;
  });
}

async function http(): Promise<void> {
  const api = createFetch({ client, tenant, target });
  let nonce = "";
  const byHand = async () => {
    const auth = await unary(
      client,
      client.authorizeRequest,
      AuthorizeRequestRequest.fromPartial({ tenant, target, httpMethod: "GET", url: apiUrl, dpopNonce: nonce }),
    );
    const headers: Record<string, string> = { authorization: auth.authorization };
    if (auth.dpop) headers.dpop = auth.dpop;
    for (const h of auth.headers) headers[h.name] = h.value;
    const response = await fetch(apiUrl, { headers });
    nonce = response.headers.get("dpop-nonce") ?? nonce;
    await response.arrayBuffer();
    if (response.status !== 200 && response.status !== 401) throw new Error(`by hand: ${response.status}`);
  };
  const wrapped = async () => {
    const response = await api(apiUrl);
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`wrapper: ${response.status}`);
  };
  const [hand, wrap] = await compare([
    ["(b) by hand (AuthorizeRequest on the stub + fetch)", byHand],
    ["(b) fetch wrapper (createFetch)                   ", wrapped],
  ]);
  const overheadUs = 1e6 / wrap - 1e6 / hand;
  console.log(
    `(b) wrapper overhead: ${overheadUs.toFixed(0)} µs/request (${((hand / wrap - 1) * 100).toFixed(1)} %)`,
  );
}

/** (c) the wrapper's own work per request: a broker and a transport that answer at once, in-process. */
async function ownWork(): Promise<void> {
  const answer = { authorization: "DPoP token", dpop: "proof", headers: [], tokenType: 2, expireTime: undefined };
  const fakeClient = {
    authorizeRequest: (_r: unknown, _m: unknown, _o: unknown, callback: (e: null, a: unknown) => void) =>
      callback(null, answer),
    close() {},
  } as unknown as TokenBrokerServiceClient;
  const response = new Response(null, { status: 204, headers: { "dpop-nonce": "n" } });
  const api = createFetch({ client: fakeClient, tenant, target, fetch: async () => response });
  for (let i = 0; i < 5_000; i++) await api(apiUrl);
  const n = 100_000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await api(apiUrl);
  const ns = Number(process.hrtime.bigint() - start) / n;
  console.log(`(c) the wrapper's own work (in-process broker and transport): ${(ns / 1000).toFixed(1)} µs/request`);
}

function fmt(x: number): string {
  return Math.round(x).toLocaleString("en-US");
}

console.log(`node ${process.version}, broker ${process.env.HELSEID_BROKER_ADDR}, ${tenant}/${target}`);
await cachedToken();
await http();
await ownWork();
client.close();
