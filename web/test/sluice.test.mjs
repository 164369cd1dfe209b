// gateway/static/sluice.js in Node: tool-call, reasoning and refusal events and the
// assembled result, first from scripted events (resets, parallel calls, fragments that
// repeat the id), then against the gateway and its fake upstream.
// Run by tests/integration/test_node_client.py with SLUICE_GATEWAY set.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createParser } from "eventsource-parser";
import { Sluice } from "../../gateway/static/sluice.js";

const gateway = process.env.SLUICE_GATEWAY;

/** A small WHATWG-style EventSource on fetch (Node 20 has none): enough for sluice.js. */
class FetchEventSource extends EventTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;

  constructor(url) {
    super();
    this.url = url;
    this.readyState = 0;
    this.onopen = null;
    this._abort = new AbortController();
    this._run();
  }

  close() {
    this.readyState = 2;
    this._abort.abort();
  }

  async _run() {
    try {
      const response = await fetch(this.url, {
        headers: { Accept: "text/event-stream" },
        signal: this._abort.signal,
      });
      if (response.status !== 200) {
        this.readyState = 2;
        this.dispatchEvent(new Event("error"));
        return;
      }
      this.readyState = 1;
      this.onopen?.(new Event("open"));
      const parser = createParser({
        onEvent: (e) => {
          if (this.readyState === 2) return;
          const event = new MessageEvent(e.event || "message", { data: e.data, lastEventId: e.id ?? "" });
          this.dispatchEvent(event);
        },
      });
      const decoder = new TextDecoder();
      for await (const chunk of response.body) parser.feed(decoder.decode(chunk, { stream: true }));
      if (this.readyState !== 2) {
        this.readyState = 2; // a cut stream: let sluice.js reconnect with ?after=
        this.dispatchEvent(new Event("error"));
      }
    } catch {
      if (this.readyState !== 2) {
        this.readyState = 2;
        this.dispatchEvent(new Event("error"));
      }
    }
  }
}

/** An EventSource that plays a script of [type, data] events, ids first, first + 1… */
function scripted(events, first = 1) {
  return class ScriptedEventSource extends EventTarget {
    constructor() {
      super();
      this.readyState = 1;
      setTimeout(() => {
        this.onopen?.(new Event("open"));
        events.forEach(([type, data], i) => {
          if (this.readyState === 2) return;
          this.dispatchEvent(new MessageEvent(type, { data: JSON.stringify(data), lastEventId: String(first + i) }));
        });
      });
    }

    close() {
      this.readyState = 2;
    }
  };
}

const call = (index, fields) => ["delta", { index: 0, tool_call: { index, arguments: "", ...fields } }];

test("tool-call fragments assemble per call in OpenAI's shape, and a reset clears them", async () => {
  const sluice = new Sluice({
    baseUrl: "http://sluice.invalid",
    EventSource: scripted([
      ["started", { model: "m", attempt: 1 }],
      ["delta", { index: 0, reasoning: "lost " }],
      call(0, { id: "call_old", type: "function", name: "old", arguments: '{"x"' }),
      ["delta", { index: 0, refusal: "lost too" }],
      ["reset", { reason: "worker_lost", attempt: 2 }],
      ["delta", { index: 0, reasoning: "Think" }],
      ["delta", { index: 0, reasoning: "ing." }],
      call(0, { id: "call_a", type: "function", name: "get_weather" }),
      call(1, { id: "call_b", type: "function", name: "get_time", arguments: '{"tz":' }),
      call(0, { arguments: '{"city":' }),
      call(0, { id: "call_a", name: "get_weather", arguments: '"Paris"}' }), // Mistral repeats them
      call(1, { arguments: '"UTC"}' }),
      ["done", { finish_reasons: ["tool_calls"], usage: null }],
    ]),
  });
  const stream = sluice.stream("job_x");
  const seen = [];
  stream.on("tool_call", (e) => seen.push([e.id, e.index, e.callIndex, e.fragment.arguments, e.call.function.arguments]));
  const reasoning = [];
  stream.on("reasoning", (e) => reasoning.push(e.reasoning));
  const refusals = [];
  stream.on("refusal", (e) => refusals.push(e.refusal));
  let resets = 0;
  stream.on("reset", () => {
    resets += 1;
    assert.deepEqual(stream.choices, []);
  });
  let done = null;
  stream.on("done", (e) => (done = e));
  const result = await stream.result;

  const calls = [
    { id: "call_a", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
    { id: "call_b", type: "function", function: { name: "get_time", arguments: '{"tz":"UTC"}' } },
  ];
  assert.equal(resets, 1);
  assert.deepEqual(seen, [
    [3, 0, 0, '{"x"', '{"x"'],
    [8, 0, 0, "", ""],
    [9, 0, 1, '{"tz":', '{"tz":'],
    [10, 0, 0, '{"city":', '{"city":'],
    [11, 0, 0, '"Paris"}', '{"city":"Paris"}'],
    [12, 0, 1, '"UTC"}', '{"tz":"UTC"}'],
  ]);
  assert.deepEqual(reasoning, ["lost ", "Think", "Thinking."]);
  assert.deepEqual(refusals, ["lost too"]);
  assert.deepEqual(result.toolCalls, calls);
  assert.equal(result.reasoning, "Thinking.");
  assert.equal(result.refusal, "");
  assert.deepEqual(result.finishReasons, ["tool_calls"]);
  assert.deepEqual(result.message, { role: "assistant", content: null, tool_calls: calls });
  assert.deepEqual(done.message, result.message);
  assert.equal(done.choices[0].finishReason, "tool_calls");
});

test("a refusal and a custom tool's input are kept, with their logprobs", async () => {
  const token = (t) => ({ token: t, logprob: -0.1, bytes: [...Buffer.from(t)], top_logprobs: [] });
  const sluice = new Sluice({
    baseUrl: "http://sluice.invalid",
    EventSource: scripted([
      ["delta", { index: 0, refusal: "I can't ", logprobs: [token("I"), token(" can't ")] }],
      ["delta", { index: 0, refusal: "help.", logprobs: [token("help.")] }],
      ["delta", { index: 1, content: "Sure", logprobs: [token("Sure")] }],
      ["delta", { index: 1, tool_call: { index: 0, id: "ct_1", type: "custom", name: "sql", arguments: "SELECT 1" } }],
      ["done", { finish_reasons: ["stop", "tool_calls"], usage: null }],
    ]),
  });
  const stream = sluice.stream("job_y");
  const result = await stream.result;
  assert.equal(result.refusal, "I can't help.");
  assert.deepEqual(result.message, { role: "assistant", content: "", refusal: "I can't help." });
  assert.deepEqual(result.choices[0].logprobs.refusal.map((t) => t.token), ["I", " can't ", "help."]);
  assert.equal(result.choices[0].logprobs.content, null);
  assert.deepEqual(stream.message(1), {
    role: "assistant",
    content: "Sure",
    tool_calls: [{ id: "ct_1", type: "custom", custom: { name: "sql", input: "SELECT 1" } }],
  });
});

test("a snapshot replaces the choices and later fragments continue it, tool calls too", async () => {
  const urls = [];
  const Script = scripted(
    [
      ["snapshot", {
        object: "sluice.snapshot", last_event_id: 7, model: "m", attempt: 1,
        choices: [{
          index: 0, content: "Hel", reasoning: "Hm", finish_reason: null,
          tool_calls: [{ index: 1, id: "call_a", type: "function", function: { name: "f", arguments: '{"a"' } }],
        }],
      }],
      ["delta", { index: 0, content: "lo" }],
      call(1, { arguments: ":1}" }),
      ["done", { finish_reasons: ["tool_calls"], usage: null }],
    ],
    7,
  );
  class Recording extends Script {
    constructor(url) {
      super(url);
      urls.push(new URL(url).searchParams);
    }
  }
  const sluice = new Sluice({ baseUrl: "http://sluice.invalid", EventSource: Recording });
  const stream = sluice.stream("job_s", { snapshot: true });
  const snapshots = [];
  stream.on("snapshot", (e) => snapshots.push([e.id, e.text]));
  const result = await stream.result;
  assert.deepEqual(snapshots, [[7, "Hel"]]);
  assert.equal(urls[0].get("snapshot"), "1");
  assert.equal(urls[0].get("after"), "0");
  assert.equal(result.text, "Hello");
  assert.equal(result.reasoning, "Hm");
  assert.deepEqual(result.toolCalls, [{ id: "call_a", type: "function", function: { name: "f", arguments: '{"a":1}' } }]);
  assert.equal(result.lastEventId, 10);
});

async function run(model, messages = [{ role: "user", content: "from node" }]) {
  const sluice = new Sluice({ baseUrl: gateway, EventSource: FetchEventSource });
  const job = await sluice.createJob({ model, messages });
  const stream = sluice.stream(job);
  const events = { tool_call: [], reasoning: [], refusal: [] };
  for (const type of Object.keys(events)) stream.on(type, (e) => events[type].push(e));
  const result = await stream.result;
  const poll = await sluice.getJob(job.id);
  return { sluice, result, events, poll };
}

test("tool calls from the gateway: events per fragment, the result as the poll rebuilds it", async () => {
  const { sluice, result, events, poll } = await run("tools;calls=2");
  assert.equal(result.status, "succeeded");
  assert.deepEqual(result.finishReasons, ["tool_calls"]);
  assert.equal(result.toolCalls.length, 2);
  assert.deepEqual(result.toolCalls, poll.choices[0].tool_calls);
  for (const [i, c] of result.toolCalls.entries()) {
    assert.ok(c.id && c.function.name, JSON.stringify(c));
    assert.equal(c.type, "function");
    JSON.parse(c.function.arguments); // complete JSON
    const mine = events.tool_call.filter((e) => e.callIndex === i);
    assert.ok(mine.length >= 1);
    assert.equal(mine.map((e) => e.fragment.arguments).join(""), c.function.arguments);
    assert.deepEqual(mine.at(-1).call, c);
  }
  assert.equal(result.message.role, "assistant");
  assert.deepEqual(result.message.tool_calls, result.toolCalls);
  // the assembled message goes back into the conversation as OpenAI's tools flow wants
  const next = [
    { role: "user", content: "from node" },
    result.message,
    ...result.toolCalls.map((c) => ({ role: "tool", tool_call_id: c.id, content: "42" })),
  ];
  const job = await sluice.createJob({ model: "openai", messages: next });
  assert.ok(job.id);
});

test("a late joiner with snapshot: true gets the answer so far, then the rest", async () => {
  const sluice = new Sluice({ baseUrl: gateway, EventSource: FetchEventSource });
  const job = await sluice.createJob({ model: "slow;delay=0.01;words=60", messages: [{ role: "user", content: "late" }] });
  while (!(await sluice.getJob(job.id)).choices[0]?.content) await new Promise((r) => setTimeout(r, 50));
  const stream = sluice.stream(job, { snapshot: true });
  const types = [];
  for (const type of ["started", "snapshot", "delta"]) stream.on(type, (e) => types.push([type, e.id]));
  const result = await stream.result;
  const poll = await sluice.getJob(job.id);
  assert.equal(types[0][0], "snapshot");
  assert.ok(!types.some(([type]) => type === "started"));
  assert.ok(types.length > 1); // joined mid-answer: deltas followed the snapshot
  assert.deepEqual(types.map(([, id]) => id), types.map((_, i) => types[0][1] + i)); // contiguous
  assert.equal(result.text, poll.choices[0].content);
  assert.equal(result.lastEventId, poll.last_event_id);
});

test("reasoning and refusals from the gateway", async () => {
  const thought = await run("reasoning");
  assert.ok(thought.result.reasoning.length > 0);
  assert.equal(thought.result.reasoning, thought.poll.choices[0].reasoning);
  assert.equal(thought.events.reasoning.at(-1).reasoning, thought.result.reasoning);
  assert.equal(thought.result.text, thought.poll.choices[0].content);

  const refused = await run("refusal");
  assert.ok(refused.result.refusal.length > 0);
  assert.equal(refused.result.refusal, refused.poll.choices[0].refusal);
  assert.equal(refused.events.refusal.map((e) => e.fragment).join(""), refused.result.refusal);
  assert.equal(refused.result.message.refusal, refused.result.refusal);
});

test("a conversation: one turn at a time, a second follower joins mid-answer, cancel frees it", async () => {
  const sluice = new Sluice({ baseUrl: gateway, EventSource: FetchEventSource });
  const conversation = sluice.conversation(`node-${Math.random().toString(36).slice(2)}`);
  const messages = [{ role: "user", content: "a conversation from node" }];
  const job = await conversation.send({ model: "slow;delay=0.02;words=30", messages });
  await assert.rejects(conversation.send({ model: "openai", messages }), (error) => {
    assert.equal(error.type, "conversation_busy");
    assert.equal(error.httpStatus, 409);
    assert.equal(error.jobId, job.id);
    return true;
  });
  const first = conversation.follow();
  await new Promise((resolve) => setTimeout(resolve, 250));
  const other = new Sluice({ baseUrl: gateway, EventSource: FetchEventSource });
  const second = other.conversation(conversation.id).follow(); // another tab: no job id known
  const [a, b] = await Promise.all([first.result, second.result]);
  const poll = await sluice.getJob(job.id);
  assert.equal(a.status, "succeeded");
  assert.equal(a.id, job.id);
  assert.equal(b.id, job.id);
  assert.equal(a.text, poll.choices[0].content);
  assert.equal(b.text, poll.choices[0].content);
  assert.ok(a.text.split(" ").length >= 30);

  const next = await conversation.send({ model: "slow;delay=0.2;words=50", messages });
  const cancelled = await other.conversation(conversation.id).cancel();
  assert.equal(cancelled.job.id, next.id);
  assert.equal(cancelled.job.status, "cancelled");
  const late = await conversation.follow().result;
  assert.equal(late.status, "cancelled");
  assert.equal(late.id, next.id);
});

test("a conversation stream that reconnects into the next turn starts over with it", async () => {
  const script = [
    [["started", "job_a/1", {}], ["delta", "job_a/2", { index: 0, content: "old turn" }]],
    [["started", "job_b/1", {}], ["delta", "job_b/2", { index: 0, content: "new" }], ["done", "job_b/3", {}]],
  ];
  const urls = [];
  class TwoTurns extends EventTarget {
    constructor(url) {
      super();
      urls.push(new URL(url).searchParams.get("after"));
      this.readyState = 1;
      const events = script.shift();
      setTimeout(() => {
        this.onopen?.(new Event("open"));
        for (const [type, id, data] of events) {
          this.dispatchEvent(new MessageEvent(type, { data: JSON.stringify(data), lastEventId: id }));
        }
        if (script.length) {
          this.readyState = 2; // the connection drops before the first turn's end
          this.dispatchEvent(new Event("error"));
        }
      });
    }

    close() {
      this.readyState = 2;
    }
  }
  // no gateway answers polls here: the stream reconnects without one
  const sluice = new Sluice({ baseUrl: "http://127.0.0.1:9", EventSource: TwoTurns });
  const result = await sluice.conversation("c").follow().result;
  assert.deepEqual(urls, ["0", "job_a/2"]);
  assert.equal(result.id, "job_b");
  assert.equal(result.text, "new");
  assert.equal(result.lastEventId, 3);
});
