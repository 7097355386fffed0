// The client's benchmark: `npm run bench` against a running broker and demo API (the same environment
// variables as the tests: HELSEID_BROKER_ADDR, DEMO_API_URL, DEMO_TENANT, DEMO_TARGET).
//   (a) a cached token through the local TokenSource: calls/s and ns per call;
//   (b) requests/s through the fetch wrapper against the demo API, next to the same requests sent "by hand"
//       (one AuthorizeRequest per request on the generated stub, the nonce kept by the loop): the overhead.
// BENCH_SECONDS (default 5) is the length of each timed run of (b).
import {
  AuthorizeRequestRequest,
  connect,
  createFetch,
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

async function timed(label: string, one: () => Promise<void>): Promise<number> {
  for (let i = 0; i < 20; i++) await one(); // warm-up (and the first nonce)
  let n = 0;
  const end = Date.now() + seconds * 1000;
  const start = process.hrtime.bigint();
  while (Date.now() < end) {
    await one();
    n++;
  }
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  const rate = n / s;
  console.log(`${label}: ${fmt(rate)} requests/s, ${(1e6 / rate).toFixed(0)} µs/request (${n} in ${s.toFixed(1)} s)`);
  return rate;
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
  const hand = await timed("(b) by hand (AuthorizeRequest on the stub + fetch)", byHand);
  const wrap = await timed("(b) fetch wrapper (createFetch)             ", wrapped);
  const overheadUs = 1e6 / wrap - 1e6 / hand;
  console.log(
    `(b) wrapper overhead: ${overheadUs.toFixed(0)} µs/request (${((hand / wrap - 1) * 100).toFixed(1)} %)`,
  );
}

function fmt(x: number): string {
  return Math.round(x).toLocaleString("en-US");
}

console.log(`node ${process.version}, broker ${process.env.HELSEID_BROKER_ADDR}, ${tenant}/${target}`);
await cachedToken();
await http();
client.close();
