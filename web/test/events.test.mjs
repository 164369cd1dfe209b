// The gateway's event stream parsed by eventsource-parser, the JavaScript ecosystem's
// SSE parser: every event arrives with its id, type and JSON data, as the contract says.
// Run by tests/integration/test_node_client.py with SLUICE_GATEWAY set.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createParser } from "eventsource-parser";

const gateway = process.env.SLUICE_GATEWAY;

async function readEvents(path, headers = {}) {
  const response = await fetch(gateway + path, { headers });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type"), /^text\/event-stream/);
  const events = [];
  let retry = null;
  const parser = createParser({
    onEvent: (event) => events.push({ id: Number(event.id), type: event.event, data: JSON.parse(event.data) }),
    onRetry: (ms) => (retry = ms),
  });
  const decoder = new TextDecoder();
  for await (const chunk of response.body) parser.feed(decoder.decode(chunk, { stream: true }));
  return { events, retry };
}

async function startJob(model) {
  const response = await fetch(`${gateway}/v1/jobs`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "from node «é» 🙂" }] }),
  });
  assert.equal(response.status, 202);
  return response.json();
}

test("a job's stream parses into contiguous, typed JSON events", async () => {
  const job = await startJob("fragmented;gap=0");
  const { events, retry } = await readEvents(job.events_url);
  assert.deepEqual(events.map((e) => e.id), events.map((_, i) => i + 1));
  assert.equal(events[0].type, "started");
  assert.equal(events.at(-1).type, "done");
  assert.ok(retry > 0);
  const text = events.filter((e) => e.type === "delta").map((e) => e.data.content).join("");
  const poll = await (await fetch(gateway + job.url)).json();
  assert.equal(text, poll.choices[0].content);
  assert.ok(text.includes("🙂") && text.includes("\n") && text.includes("\u2028"));
});

test("resuming with Last-Event-ID gives exactly the later events", async () => {
  const job = await startJob("openai");
  const { events: all } = await readEvents(job.events_url);
  const { events: rest } = await readEvents(job.events_url, { "Last-Event-ID": "3" });
  assert.deepEqual(rest, all.slice(3));
});

test("an upstream failure arrives as a typed error event", async () => {
  const job = await startJob("http-401");
  const { events } = await readEvents(job.events_url);
  const last = events.at(-1);
  assert.equal(last.type, "error");
  assert.equal(last.data.error.status, 401);
});
