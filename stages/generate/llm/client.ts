/**
 * An OpenAI-compatible chat-completions client with content-addressed recordings.
 *
 * Every exchange is stored as `<recordings>/<sha256>.json`, where the hash is taken over the
 * canonical JSON of the request (model, messages, sampling settings; never the endpoint or the
 * key). A recorded request is answered from its file without any network, so a campaign replays
 * offline byte for byte. Transport: plain JSON or SSE streaming, a per-request timeout, and
 * bounded retries with exponential back-off on 429, 5xx and network errors (Retry-After honoured).
 * The API key only ever goes into the Authorization header; every error text is redacted.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { canonicalJson, sha256, writeFileAtomic } from "../../../pipeline/engine/mod.ts";

/** One chat message. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** The recorded part of a request: everything that can change the answer. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  seed?: number;
  reasoning_effort?: string;
}

/** Token counts of one exchange. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

/** The recorded part of a response. */
export interface ChatResponse {
  content: string;
  finish_reason: string | null;
  usage: Usage;
  /** True when the server sent no usage and the counts were estimated (4 characters a token). */
  usage_estimated: boolean;
}

/** Where and how to call the endpoint. */
export interface EndpointConfig {
  baseUrl: string;
  apiKey?: string;
  stream: boolean;
  timeoutMs: number;
  maxRetries: number;
  backoffMs: number;
  maxBackoffMs: number;
}

/** Error raised for problems the user must fix (missing recording, endpoint refusing, ...). */
export class LlmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LlmError";
  }
}

/** Content-addressed store of recordings (chat exchanges and evaluations). */
export class RecordingStore {
  constructor(readonly dir: string) {}

  /** The key of a recorded object: sha256 of its canonical JSON. */
  static key(kind: string, request: unknown): string {
    return sha256(canonicalJson({ kind, request }));
  }

  path(key: string): string {
    return join(this.dir, `${key}.json`);
  }

  get<T>(kind: string, request: unknown): T | undefined {
    const p = this.path(RecordingStore.key(kind, request));
    if (!existsSync(p)) return undefined;
    const doc = JSON.parse(readFileSync(p, "utf8")) as { kind: string; response: T };
    if (doc.kind !== kind) {
      throw new LlmError(`${p}: recording kind "${doc.kind}" where "${kind}" was expected`);
    }
    return doc.response;
  }

  put(kind: string, request: unknown, response: unknown): string {
    const key = RecordingStore.key(kind, request);
    writeFileAtomic(this.path(key), JSON.stringify({ kind, request, response }, null, 2) + "\n");
    return key;
  }
}

const estimateTokens = (text: string) => Math.ceil(text.length / 4);

/** Replaces the key wherever it might appear in a message. */
export function redact(text: string, apiKey?: string): string {
  return apiKey ? text.split(apiKey).join("***") : text;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(new LlmError("aborted"));
    }, { once: true });
  });

/** Reads an SSE chat-completions stream into one response. */
async function readSse(
  body: ReadableStream<Uint8Array>,
  prompt: ChatRequest,
): Promise<ChatResponse> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let content = "";
  let finish: string | null = null;
  let usage: Usage | null = null;
  let done = false;
  const handle = (line: string) => {
    const l = line.replace(/\r$/, "");
    if (!l.startsWith("data:")) return;
    const data = l.slice(5).trim();
    if (data === "[DONE]") {
      done = true;
      return;
    }
    const chunk = JSON.parse(data);
    if (chunk.error) {
      throw new LlmError(`stream error: ${JSON.stringify(chunk.error).slice(0, 500)}`);
    }
    const choice = chunk.choices?.[0];
    if (choice?.delta?.content) content += choice.delta.content;
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) {
      usage = {
        prompt_tokens: chunk.usage.prompt_tokens ?? 0,
        completion_tokens: chunk.usage.completion_tokens ?? 0,
      };
    }
  };
  while (!done) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buf += value;
    let nl: number;
    while ((nl = buf.indexOf("\n")) !== -1 && !done) {
      handle(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  if (!done && buf) handle(buf);
  await reader.cancel().catch(() => {});
  return finalize(content, finish, usage, prompt);
}

function finalize(
  content: string,
  finish: string | null,
  usage: Usage | null,
  req: ChatRequest,
): ChatResponse {
  return usage ? { content, finish_reason: finish, usage, usage_estimated: false } : {
    content,
    finish_reason: finish,
    usage: {
      prompt_tokens: estimateTokens(req.messages.map((m) => m.content).join("")),
      completion_tokens: estimateTokens(content),
    },
    usage_estimated: true,
  };
}

/** Sends one request to the endpoint with timeout and retries. */
export async function callEndpoint(
  req: ChatRequest,
  cfg: EndpointConfig,
  log: (m: string) => void,
  signal?: AbortSignal,
): Promise<ChatResponse> {
  const url = `${cfg.baseUrl.replace(/\/+$/, "")}/chat/completions`;
  const body = JSON.stringify({
    ...req,
    stream: cfg.stream,
    ...(cfg.stream ? { stream_options: { include_usage: true } } : {}),
  });
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (cfg.apiKey) headers.authorization = `Bearer ${cfg.apiKey}`;
  let lastErr = "";
  for (let attempt = 0; attempt <= cfg.maxRetries; attempt++) {
    let retryAfterMs: number | null = null;
    try {
      const timeout = AbortSignal.timeout(cfg.timeoutMs);
      const res = await fetch(url, {
        method: "POST",
        headers,
        body,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      if (res.ok) {
        if (
          cfg.stream && res.body &&
          (res.headers.get("content-type") ?? "").includes("text/event-stream")
        ) {
          return await readSse(res.body, req);
        }
        const j = await res.json();
        const choice = j.choices?.[0];
        if (typeof choice?.message?.content !== "string") {
          throw new LlmError(
            `endpoint answered without choices[0].message.content: ${
              JSON.stringify(j).slice(0, 300)
            }`,
          );
        }
        const usage = j.usage
          ? {
            prompt_tokens: j.usage.prompt_tokens ?? 0,
            completion_tokens: j.usage.completion_tokens ?? 0,
          }
          : null;
        return finalize(choice.message.content, choice.finish_reason ?? null, usage, req);
      }
      const text = (await res.text()).slice(0, 500);
      lastErr = `HTTP ${res.status}: ${text}`;
      if (res.status !== 429 && res.status < 500) {
        throw new LlmError(
          redact(`chat endpoint ${url} refused the request: ${lastErr}`, cfg.apiKey),
        );
      }
      const ra = Number(res.headers.get("retry-after"));
      if (Number.isFinite(ra) && ra >= 0) retryAfterMs = ra * 1000;
    } catch (e) {
      if (e instanceof LlmError) throw e;
      if (signal?.aborted) throw new LlmError("aborted");
      lastErr = (e as Error).name === "TimeoutError"
        ? `timed out after ${cfg.timeoutMs} ms`
        : (e as Error).message;
    }
    if (attempt < cfg.maxRetries) {
      const wait = Math.min(cfg.maxBackoffMs, retryAfterMs ?? cfg.backoffMs * 2 ** attempt);
      log(
        redact(
          `llm: attempt ${attempt + 1} failed (${lastErr.slice(0, 200)}); retrying in ${wait} ms`,
          cfg.apiKey,
        ),
      );
      await sleep(wait, signal);
    }
  }
  throw new LlmError(
    redact(
      `chat endpoint ${url} failed after ${cfg.maxRetries + 1} attempt(s): ${lastErr}`,
      cfg.apiKey,
    ),
  );
}

/** How a chat request is answered. */
export interface ChatOptions {
  store: RecordingStore;
  /** Absent: replay only. */
  endpoint?: EndpointConfig;
  log: (m: string) => void;
  signal?: AbortSignal;
}

/** Answers a request from its recording, or calls the endpoint and records the answer. */
export async function chat(
  req: ChatRequest,
  opts: ChatOptions,
): Promise<{ response: ChatResponse; replayed: boolean }> {
  const rec = opts.store.get<ChatResponse>("chat", req);
  if (rec) return { response: rec, replayed: true };
  if (!opts.endpoint) {
    throw new LlmError(
      `no recording ${
        opts.store.path(RecordingStore.key("chat", req))
      } for this request (model ${req.model}) and no endpoint: ` +
        `set TRACEPIPE_LLM_BASE_URL (and TRACEPIPE_LLM_API_KEY if the endpoint needs one) to run the campaign live`,
    );
  }
  const response = await callEndpoint(req, opts.endpoint, opts.log, opts.signal);
  opts.store.put("chat", req, response);
  return { response, replayed: false };
}
