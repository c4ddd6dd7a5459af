/**
 * A local OpenAI-compatible chat-completions server with a scripted "model", for tests and for
 * recording the committed fixture campaign (record_fixture.ts). It listens on 127.0.0.1 with an
 * OS-chosen port, speaks plain JSON and SSE streaming, can fail the first requests with given
 * HTTP statuses (to exercise retries) and can check the bearer key.
 *
 * The fake model writes a Python RMSNorm: round 1 forgets the weight (a plausible numerical bug),
 * round 2 fixes it, later rounds use torch's fused rms_norm. Its evaluator (`fakeEvaluate`) judges
 * by reading the code, with no GPU; it exists only so the agent loop can be exercised offline.
 */
import type { Evaluate, Feedback } from "./agent.ts";

/** Options of the fake server. */
export interface FakeLlmOptions {
  /** HTTP statuses to answer the first requests with, in order (e.g. [429, 503]). */
  failures?: number[];
  /** Bearer key the server requires (401 otherwise). */
  requireKey?: string;
  /** Delay before answering, in ms (to exercise timeouts). */
  delayMs?: number;
  /** Leave usage out of answers (the client must estimate it). */
  omitUsage?: boolean;
}

/** A running fake server. */
export interface FakeLlm {
  url: string;
  /** Raw request bodies and authorization headers received, in order. */
  received: Array<{ body: string; authorization: string | null }>;
  close(): Promise<void>;
}

/** The scripted model's answer to a user prompt. */
export function fakeAnswer(user: string): string {
  const round = Number(user.match(/Benchmark result \(round (\d+) of/)?.[1] ?? 0) + 1;
  const eps = user.match(/EPS = ([0-9.e-]+)/)?.[1] ?? "1e-6";
  const args = user.match(/receives the inputs positionally in this order: ([^.\n]+)\./)?.[1] ??
    "hidden_states, weight";
  const [x, w] = args.split(",").map((s) => s.trim());
  let body: string;
  if (round === 1) {
    body = [
      `    v = ${x}.to(torch.float32)`,
      `    inv = torch.rsqrt(v.pow(2).mean(dim=-1, keepdim=True) + ${eps})`,
      `    return (v * inv).to(${x}.dtype)`,
    ].join("\n");
  } else if (round === 2) {
    body = [
      `    v = ${x}.to(torch.float32)`,
      `    inv = torch.rsqrt(v.pow(2).mean(dim=-1, keepdim=True) + ${eps})`,
      `    return (v * inv * ${w}.to(torch.float32)).to(${x}.dtype)`,
    ].join("\n");
  } else {
    body = [
      `    out = torch.nn.functional.rms_norm(${x}.to(torch.float32), (${x}.shape[-1],), ${w}.to(torch.float32), ${eps})`,
      `    return out.to(${x}.dtype)`,
    ].join("\n");
  }
  return [
    round === 1 ? "Here is a first version." : "Here is the improved version.",
    "",
    '<file path="main.py">',
    "import torch",
    "",
    "",
    `def run(${x}, ${w}):`,
    body,
    "</file>",
    "",
  ].join("\n");
}

/** Evaluator of the fake model's code (no GPU): numerical bug unless the weight is applied. */
export const fakeEvaluate: Evaluate = (sol) => {
  const code = sol.sources.map((s) => s.content).join("\n");
  const weighted = /\*\s*\w+\.to\(torch\.float32\)/.test(code) || code.includes("rms_norm(");
  const fused = code.includes("rms_norm(");
  const fb: Feedback = weighted
    ? {
      status: "PASSED",
      log: "",
      max_absolute_error: 0.0078125,
      max_relative_error: 0.0039,
      latency_ms: fused ? 0.008 : 0.0125,
      reference_latency_ms: 0.01,
      speedup_factor: fused ? 1.25 : 0.8,
    }
    : {
      status: "INCORRECT_NUMERICAL",
      log: "max_absolute_error 1.84 exceeds atol 0.01 on 4096 of 4096 elements",
      max_absolute_error: 1.84,
      max_relative_error: 0.97,
    };
  return Promise.resolve(fb);
};

/** Starts the fake server. */
export function startFakeLlm(opts: FakeLlmOptions = {}): FakeLlm {
  const failures = [...(opts.failures ?? [])];
  const received: FakeLlm["received"] = [];
  const ac = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, async (req) => {
    const body = await req.text();
    received.push({ body, authorization: req.headers.get("authorization") });
    if (new URL(req.url).pathname !== "/v1/chat/completions") {
      return new Response("not found", { status: 404 });
    }
    if (opts.requireKey && req.headers.get("authorization") !== `Bearer ${opts.requireKey}`) {
      return Response.json({ error: { message: "invalid api key" } }, { status: 401 });
    }
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    const status = failures.shift();
    if (status) {
      return Response.json({ error: { message: `injected ${status}` } }, {
        status,
        headers: { "retry-after": "0" },
      });
    }
    const j = JSON.parse(body);
    const user = j.messages.filter((m: { role: string }) => m.role === "user").map((
      m: { content: string },
    ) => m.content).join("\n");
    const content = fakeAnswer(user);
    const usage = {
      prompt_tokens: Math.ceil(JSON.stringify(j.messages).length / 4),
      completion_tokens: Math.ceil(content.length / 4),
    };
    if (!j.stream) {
      return Response.json({
        id: "fake",
        object: "chat.completion",
        model: j.model,
        choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
        ...(opts.omitUsage ? {} : { usage }),
      });
    }
    const pieces = [content.slice(0, 17), content.slice(17, 90), content.slice(90)];
    const chunks = [
      ...pieces.map((p) => ({
        choices: [{ index: 0, delta: { content: p }, finish_reason: null }],
      })),
      { choices: [{ index: 0, delta: {}, finish_reason: "stop" }] },
      ...(opts.omitUsage ? [] : [{ choices: [], usage }]),
    ];
    const sse = chunks.map((c) => `data: ${JSON.stringify(c)}\r\n\r\n`).join("") +
      "data: [DONE]\n\n";
    return new Response(sse, { headers: { "content-type": "text/event-stream" } });
  });
  const addr = server.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${addr.port}/v1`,
    received,
    close: async () => {
      ac.abort();
      await server.finished;
    },
  };
}
