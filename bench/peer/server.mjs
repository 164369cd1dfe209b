// The benchmark's "peer" system: vercel's `resumable-stream` (2.2.x, node-redis clients)
// behind one node:http server, used the way an AI SDK app uses it.
//
//   POST /chat        {"model", "messages", "id"?} -> the answer as Sluice-shaped SSE
//                     (streamContext.resumableStream(id, makeStream)); header X-Stream-Id.
//   GET  /chat/<id>   ?skip=<characters>  -> streamContext.resumeExistingStream(id, skip):
//                     the buffered text from `skip` (default 0: from the start), then live;
//                     204 when the package returns nothing (X-Resume-State: done | unknown).
//   GET  /healthz     -> 200 ok          GET /stats -> JSON counters
//
// Env: PORT, REDIS_URL, OPENAI_BASE_URL, OPENAI_API_KEY, PEER_KEY_PREFIX (resumable-stream's
// keyPrefix: every key and channel it makes starts with "<PEER_KEY_PREFIX>:rs:").

import http from "node:http";
import https from "node:https";
import { randomUUID } from "node:crypto";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";
import { createParser } from "eventsource-parser";

const PORT = Number(process.env.PORT ?? 8095);
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379/0";
const BASE_URL = (process.env.OPENAI_BASE_URL || "http://127.0.0.1:8091/v1").replace(/\/+$/, "");
const API_KEY = process.env.OPENAI_API_KEY || "bench";
const KEY_PREFIX = process.env.PEER_KEY_PREFIX || "sluice-bench-peer";
const MAX_BODY = 1 << 20;

const SSE_HEADERS = {
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache",
  "X-Accel-Buffering": "no",
};
const DONE_FRAME = "event: done\ndata: {}\n\n";
const errorFrame = (message) => `event: error\ndata: ${JSON.stringify({ message })}\n\n`;

// -- logging: one line per error, at most 20 per kind per 10 s (then a count) -------------

const logWindow = new Map();
function logError(kind, message) {
  const now = Date.now();
  let w = logWindow.get(kind);
  if (!w || now - w.start > 10_000) {
    if (w && w.suppressed) {
      process.stderr.write(`${new Date().toISOString()} error ${kind}: ${w.suppressed} more suppressed\n`);
    }
    w = { start: now, count: 0, suppressed: 0 };
    logWindow.set(kind, w);
  }
  if (++w.count <= 20) {
    process.stderr.write(`${new Date().toISOString()} error ${kind}: ${String(message).replace(/\s+/g, " ").slice(0, 300)}\n`);
  } else {
    w.suppressed++;
  }
}

// The package's producer loop (`reader.read().then(async …)`) has no catch: a failed PUBLISH
// or SET would be an unhandled rejection, which kills Node 20 by default. Log it instead.
process.on("unhandledRejection", (reason) => logError("unhandled-rejection", reason?.stack || reason));

// -- Redis and the resumable-stream context -----------------------------------------------

function redisClient(name) {
  const client = createClient({ url: REDIS_URL });
  client.on("error", (err) => logError(`redis-${name}`, err?.message || err));
  return client;
}
const publisher = redisClient("publisher");
const subscriber = redisClient("subscriber");
await Promise.all([publisher.connect(), subscriber.connect()]);

const streamContext = createResumableStreamContext({
  waitUntil: null, // a long-running server: nothing to keep alive
  keyPrefix: KEY_PREFIX,
  publisher,
  subscriber,
});

// -- the upstream: OpenAI streaming chat completions -> Sluice-shaped SSE text ------------

const upstreamUrl = new URL(`${BASE_URL}/chat/completions`);
const transport = upstreamUrl.protocol === "https:" ? https : http;
const agent = new transport.Agent({
  keepAlive: true,
  maxSockets: Infinity,
  maxFreeSockets: Infinity,
  scheduling: "lifo",
});

const stats = { streams: 0, open_producers: 0, peak_producers: 0, open_responses: 0, peak_responses: 0, upstream_errors: 0 };

/** makeStream: a ReadableStream<string> of SSE frames, one string per upstream network read.
 * It never errors (the package does not catch a failing source): failures become an
 * `event: error` frame and a normal close. */
function upstreamStream(model, messages) {
  let request;
  return new ReadableStream({
    start(controller) {
      let closed = false;
      let seq = 0;
      stats.streams++;
      stats.open_producers++;
      stats.peak_producers = Math.max(stats.peak_producers, stats.open_producers);
      const finish = (text) => {
        if (closed) return;
        closed = true;
        stats.open_producers--;
        if (text) controller.enqueue(text);
        controller.close();
      };
      const fail = (message) => {
        if (closed) return;
        stats.upstream_errors++;
        logError("upstream", message);
        finish(errorFrame(message));
      };
      const body = JSON.stringify({ model, messages, stream: true });
      request = transport.request(upstreamUrl, {
        method: "POST",
        agent,
        headers: {
          "Content-Type": "application/json",
          "Content-Length": Buffer.byteLength(body),
          Accept: "text/event-stream",
          Authorization: `Bearer ${API_KEY}`,
        },
      }, (response) => {
        response.setEncoding("utf8");
        if (response.statusCode !== 200) {
          let text = "";
          response.on("data", (d) => { if (text.length < 500) text += d; });
          response.on("end", () => fail(`upstream http ${response.statusCode}: ${text.slice(0, 300)}`));
          response.on("error", (e) => fail(`upstream http ${response.statusCode}: ${e.message}`));
          return;
        }
        let out = "";
        let sawDone = false;
        let failure = null;
        const parser = createParser({
          onEvent(event) {
            if (sawDone || failure) return;
            if (event.data === "[DONE]") { sawDone = true; return; }
            let chunk;
            try { chunk = JSON.parse(event.data); } catch { failure = `bad upstream chunk: ${event.data.slice(0, 100)}`; return; }
            if (chunk.error) { failure = `upstream error: ${chunk.error.message || JSON.stringify(chunk.error)}`; return; }
            const content = chunk.choices?.[0]?.delta?.content;
            if (content) {
              seq++;
              out += `id: ${seq}\nevent: delta\ndata: ${JSON.stringify({ index: 0, content })}\n\n`;
            }
          },
        });
        response.on("data", (text) => {
          if (closed) return; // after [DONE]: drain the rest so the socket goes back to the pool
          parser.feed(text);
          const batch = out;
          out = "";
          if (failure) { if (batch) controller.enqueue(batch); fail(failure); }
          else if (sawDone) finish(batch + DONE_FRAME);
          else if (batch) controller.enqueue(batch);
        });
        response.on("end", () => fail("upstream ended without [DONE]"));
        response.on("aborted", () => fail("upstream connection aborted"));
        response.on("error", (e) => fail(`upstream read: ${e.message}`));
      });
      request.on("error", (e) => fail(`upstream request: ${e.code || ""} ${e.message}`));
      request.end(body);
    },
    cancel() {
      // resumable-stream never cancels its source (the producer always completes so that a
      // reconnect can resume); this is here in case a later version does.
      request?.destroy();
    },
  });
}

// -- HTTP plumbing ------------------------------------------------------------------------

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let size = 0;
    req.on("data", (d) => {
      size += d.length;
      if (size > MAX_BODY) { reject(new Error("body too large")); req.destroy(); return; }
      parts.push(d);
    });
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
    req.on("error", reject);
  });
}

function reply(res, status, text, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...headers });
  res.end(text);
}

function writable(res) {
  return new Promise((resolve) => {
    const go = () => { res.off("drain", go); res.off("close", go); resolve(); };
    res.on("drain", go);
    res.on("close", go);
  });
}

/** Copies a ReadableStream<string> to the response, chunk by chunk, waiting on 'drain'. */
async function pipeSse(res, stream, id) {
  res.writeHead(200, { ...SSE_HEADERS, "X-Stream-Id": id });
  res.flushHeaders();
  stats.open_responses++;
  stats.peak_responses = Math.max(stats.peak_responses, stats.open_responses);
  const reader = stream.getReader();
  let gone = false;
  const onClose = () => {
    if (res.writableEnded) return;
    gone = true; // the client hung up: stop reading (a producer's upstream carries on)
    reader.cancel().catch(() => {});
  };
  res.on("close", onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || gone) break;
      if (!res.write(value)) await writable(res);
    }
    if (!gone) res.end();
  } catch (e) {
    logError("stream", e?.message || e);
    if (!res.writableEnded) res.end(errorFrame(String(e?.message || e)));
  } finally {
    stats.open_responses--;
    res.off("close", onClose);
  }
}

async function postChat(req, res) {
  let body;
  try {
    body = JSON.parse(await readBody(req));
  } catch (e) {
    return reply(res, 400, `bad request: ${e.message}\n`);
  }
  const id = typeof body?.id === "string" && body.id ? body.id : randomUUID();
  const model = String(body?.model || "bench");
  const messages = Array.isArray(body?.messages) ? body.messages : [];
  // Idempotent API: a new id starts the producer; an id in progress resumes it (from 0).
  const stream = await streamContext.resumableStream(id, () => upstreamStream(model, messages));
  if (!stream) return reply(res, 409, "stream already done\n", { "X-Stream-Id": id });
  await pipeSse(res, stream, id);
}

async function getChat(req, res, id, url) {
  const raw = url.searchParams.get("skip");
  const skip = raw === null || raw === "" ? undefined : Number.parseInt(raw, 10);
  if (skip !== undefined && !(skip >= 0)) return reply(res, 400, "bad skip\n");
  let stream;
  try {
    stream = await streamContext.resumeExistingStream(id, skip);
  } catch (e) {
    // "Timeout waiting for ack": the sentinel says in progress but no producer answered
    // within 1 s (e.g. the producing process died).
    logError("resume", e?.message || e);
    return reply(res, 504, `resume failed: ${e?.message || e}\n`, { "X-Stream-Id": id });
  }
  if (!stream) {
    // null: the sentinel says DONE (finished < 24 h ago); undefined: no such stream.
    res.writeHead(204, { "X-Stream-Id": id, "X-Resume-State": stream === null ? "done" : "unknown" });
    return res.end();
  }
  await pipeSse(res, stream, id);
}

async function handle(req, res) {
  req.on("error", () => {});
  res.on("error", () => {});
  const url = new URL(req.url, "http://peer");
  const path = url.pathname;
  if (req.method === "GET" && path === "/healthz") return reply(res, 200, "ok");
  if (req.method === "GET" && path === "/stats") {
    res.writeHead(200, { "Content-Type": "application/json" });
    return res.end(JSON.stringify(stats));
  }
  if (path === "/chat" && req.method === "POST") return postChat(req, res);
  if (path.startsWith("/chat/") && req.method === "GET") {
    const id = decodeURIComponent(path.slice("/chat/".length));
    if (id && !id.includes("/")) return getChat(req, res, id, url);
  }
  return reply(res, 404, "not found\n");
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    logError("request", e?.stack || e);
    if (!res.headersSent) reply(res, 500, "internal error\n");
    else res.destroy();
  });
});
server.requestTimeout = 0; // streams last as long as they last
server.headersTimeout = 120_000;
server.keepAliveTimeout = 65_000;
server.on("clientError", (err, socket) => {
  if (err.code !== "ECONNRESET" && err.code !== "EPIPE") logError("client", err.message);
  socket.destroy();
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    Promise.allSettled([publisher.quit(), subscriber.quit()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}

server.listen({ port: PORT, host: "127.0.0.1", backlog: 4096 }, () => {
  console.log(`ready port=${server.address().port} key_prefix=${KEY_PREFIX}:rs`);
});
