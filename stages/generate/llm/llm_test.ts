import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listFiles, loadTraceSet } from "../../../pipeline/trace/mod.ts";
import { createGenerateStage } from "../stage.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../../tests/assert.ts";
import { type Campaign, extractFiles, loadPrompts, runCampaign } from "./agent.ts";
import { chat, type ChatRequest, type EndpointConfig, RecordingStore } from "./client.ts";
import { fakeEvaluate, startFakeLlm } from "./fake_llm.ts";
import { FIXTURE_DIR, fixtureContext, fixtureJob, fixtureParams } from "./fixture.ts";

const root = new URL("../../..", import.meta.url).pathname;
const KEY = "sk-test-SECRET-0123456789";
const req: ChatRequest = {
  model: "m",
  messages: [{ role: "user", content: "receives the inputs positionally in this order: x, w." }],
  temperature: 0,
};
const cfg = (url: string, over: Partial<EndpointConfig> = {}): EndpointConfig => ({
  baseUrl: url,
  apiKey: KEY,
  stream: false,
  timeoutMs: 5000,
  maxRetries: 3,
  backoffMs: 1,
  maxBackoffMs: 5,
  ...over,
});
const tmpStore = () => new RecordingStore(mkdtempSync(join(tmpdir(), "tp-rec-")));

Deno.test("client: JSON and SSE answers are identical and recorded without the key", async () => {
  const fake = startFakeLlm({ requireKey: KEY });
  try {
    const s1 = tmpStore();
    const a = await chat(req, { store: s1, endpoint: cfg(fake.url), log: () => {} });
    const s2 = tmpStore();
    const b = await chat(req, {
      store: s2,
      endpoint: cfg(fake.url, { stream: true }),
      log: () => {},
    });
    assertEquals(a.response, b.response);
    assertMatch(a.response.content, /<file path="main.py">/);
    assertEquals(a.replayed, false);
    assertEquals(fake.received.map((r) => r.authorization), [`Bearer ${KEY}`, `Bearer ${KEY}`]);
    for (const s of [s1, s2]) {
      const files = readdirSync(s.dir);
      assertEquals(files, [`${RecordingStore.key("chat", req)}.json`]);
      assert(!readFileSync(join(s.dir, files[0]), "utf8").includes(KEY));
    }
    assert(!fake.received.some((r) => r.body.includes(KEY)));
    // Replay: no request reaches the server.
    const n = fake.received.length;
    const c = await chat(req, { store: s1, log: () => {} });
    assertEquals([c.replayed, fake.received.length], [true, n]);
  } finally {
    await fake.close();
  }
});

Deno.test("client: retries 429/5xx with back-off, fails fast on 4xx, redacts the key", async () => {
  const fake = startFakeLlm({ failures: [429, 503] });
  const logs: string[] = [];
  try {
    const r = await chat(req, {
      store: tmpStore(),
      endpoint: cfg(fake.url),
      log: (m) => logs.push(m),
    });
    assertMatch(r.response.content, /def run\(x, w\)/);
    assertEquals(fake.received.length, 3);
    assertEquals(logs.length, 2);
  } finally {
    await fake.close();
  }
  const exhausted = startFakeLlm({ failures: [500, 500, 500] });
  try {
    await assertRejects(
      chat(req, {
        store: tmpStore(),
        endpoint: cfg(exhausted.url, { maxRetries: 2 }),
        log: () => {},
      }),
      /failed after 3 attempt\(s\): HTTP 500/,
    );
  } finally {
    await exhausted.close();
  }
  const auth = startFakeLlm({ requireKey: "other" });
  try {
    const e = await assertRejects(
      chat(req, { store: tmpStore(), endpoint: cfg(auth.url), log: () => {} }),
      /refused the request: HTTP 401/,
    );
    assert(!e.message.includes(KEY));
    assertEquals(auth.received.length, 1);
  } finally {
    await auth.close();
  }
});

Deno.test("client: a slow endpoint times out and is retried a bounded number of times", async () => {
  const fake = startFakeLlm({ delayMs: 300 });
  try {
    await assertRejects(
      chat(req, {
        store: tmpStore(),
        endpoint: cfg(fake.url, { timeoutMs: 50, maxRetries: 1 }),
        log: () => {},
      }),
      /timed out after 50 ms/,
    );
    assertEquals(fake.received.length, 2);
  } finally {
    await fake.close();
  }
});

Deno.test("client: missing usage is estimated; no recording and no endpoint is a clear error", async () => {
  const fake = startFakeLlm({ omitUsage: true });
  try {
    const r = await chat(req, {
      store: tmpStore(),
      endpoint: cfg(fake.url, { stream: true }),
      log: () => {},
    });
    assert(r.response.usage_estimated && r.response.usage.completion_tokens > 0);
  } finally {
    await fake.close();
  }
  await assertRejects(
    chat(req, { store: tmpStore(), log: () => {} }),
    /no recording .*TRACEPIPE_LLM_BASE_URL/,
  );
});

Deno.test("agent: extracts files from tags, fences and bare fenced python", () => {
  assertEquals(extractFiles('<file path="a.py">\n```python\nx = 1\n```\n</file>', "python"), [{
    path: "a.py",
    content: "x = 1\n",
  }]);
  assertEquals(extractFiles("text\n```python\ndef run():\n    pass\n```\n", "triton"), [{
    path: "main.py",
    content: "def run():\n    pass\n",
  }]);
  assertEquals(extractFiles("```cpp\nint x;\n```", "cuda"), []);
});

function campaign(over: Partial<Campaign> = {}): Campaign {
  const { set } = loadTraceSet(join(root, FIXTURE_DIR, "input"));
  return {
    definition: set.definitions.get("rmsnorm_h128")!,
    language: "python",
    model: "fake",
    hardware: "H100",
    rounds: 4,
    workload: set.workloads.get("rmsnorm_h128")![0],
    sampling: { temperature: 0 },
    budget: { inputUsdPerMTok: 0, outputUsdPerMTok: 0 },
    ...over,
  };
}

Deno.test("agent: feeds back errors, keeps the best PASSED, stops cleanly at the budget", async () => {
  const fake = startFakeLlm();
  try {
    const store = tmpStore();
    const seen: string[] = [];
    const evaluate = async (...a: Parameters<typeof fakeEvaluate>) => {
      seen.push(a[0].name);
      return await fakeEvaluate(...a);
    };
    const r = await runCampaign(campaign(), loadPrompts(root), evaluate, {
      store,
      endpoint: cfg(fake.url),
      log: () => {},
    });
    assertEquals(r.rounds.map((x) => x.status), [
      "INCORRECT_NUMERICAL",
      "PASSED",
      "PASSED",
      "PASSED",
    ]);
    assertEquals(r.best?.name, "fake_rmsnorm_h128_python_r3"); // r4 repeats r3's code: not better, so r3 stays best
    assertEquals(seen, [
      "fake_rmsnorm_h128_python_r1",
      "fake_rmsnorm_h128_python_r2",
      "fake_rmsnorm_h128_python_r3",
    ]); // r4 evaluation reused (same content hash)
    // The round-2 prompt carried round 1's numerical error.
    assertMatch(
      JSON.parse(fake.received[1].body).messages[1].content,
      /INCORRECT_NUMERICAL[\s\S]*max absolute error: 1.84/,
    );
    // Budget: 1 token allowed, so only the first request is made.
    const b = await runCampaign(
      campaign({ budget: { maxTokens: 1, inputUsdPerMTok: 0, outputUsdPerMTok: 0 } }),
      loadPrompts(root),
      fakeEvaluate,
      { store: tmpStore(), endpoint: cfg(fake.url), log: () => {} },
    );
    assertEquals([b.stopped, b.rounds.length, b.best], ["budget", 1, null]);
    const c = await runCampaign(
      campaign({ budget: { maxCostUsd: 0.001, inputUsdPerMTok: 1000, outputUsdPerMTok: 1000 } }),
      loadPrompts(root),
      fakeEvaluate,
      { store: tmpStore(), endpoint: cfg(fake.url), log: () => {} },
    );
    assertEquals([c.stopped, c.rounds.length], ["budget", 1]);
  } finally {
    await fake.close();
  }
});

function outputs(dir: string): Map<string, string> {
  return new Map(listFiles(dir, "").map((f) => [f.slice(dir.length + 1), readFileSync(f, "utf8")]));
}

Deno.test("replay: the committed campaign reproduces byte for byte, offline, with no evaluator", async () => {
  const stage = createGenerateStage({
    evaluate: () => Promise.reject(new Error("must not evaluate")),
    env: (n) => (n === "TRACEPIPE_LLM_BASE_URL" ? "http://127.0.0.1:9/unreachable" : undefined),
  });
  const ctx = fixtureContext(root, fixtureParams("data/llm-recordings", "replay"));
  const [plan] = await stage.plan(ctx);
  assertEquals(plan.id, "llm/fake-rmsnorm-1/python/rmsnorm_h128");
  const outDir = mkdtempSync(join(tmpdir(), "tp-replay-"));
  await stage.run!(fixtureJob(plan, outDir), ctx);
  const expected = outputs(join(root, FIXTURE_DIR, "expected"));
  assert(expected.size >= 4);
  assertEquals(outputs(outDir), expected);
});

Deno.test("record: a live run against the fake server gives the committed output", async () => {
  const fake = startFakeLlm();
  try {
    const rec = mkdtempSync(join(tmpdir(), "tp-rec-"));
    const stage = createGenerateStage({
      evaluate: fakeEvaluate,
      env: (
        n,
      ) => (n === "TRACEPIPE_LLM_BASE_URL"
        ? fake.url
        : n === "TRACEPIPE_LLM_API_KEY"
        ? KEY
        : undefined),
    });
    const ctx = fixtureContext(root, fixtureParams(rec, "auto"));
    const [plan] = await stage.plan(ctx);
    assert(!JSON.stringify(plan).includes(KEY));
    const outDir = mkdtempSync(join(tmpdir(), "tp-live-"));
    await stage.run!(fixtureJob(plan, outDir), ctx);
    assertEquals(fake.received.length, 3);
    assertEquals(outputs(outDir), outputs(join(root, FIXTURE_DIR, "expected")));
    for (const f of readdirSync(rec)) {
      assert(existsSync(join(root, "data/llm-recordings", f)), `recording ${f} is committed`);
      assert(!readFileSync(join(rec, f), "utf8").includes(KEY));
    }
  } finally {
    await fake.close();
  }
});
