// Sluice browser client: start a completion job, follow its events, cancel it.
//
// One dependency-free ES module. Import it from the gateway (`/static/sluice.js`) or copy
// it into your app. Streams use the browser's EventSource, which reconnects by itself
// and sends Last-Event-ID; when the browser gives up (the gateway answered an error page
// during a deploy, say), this client reconnects itself with `?after=<last id>`. Either
// way every event is applied exactly once, in order.
//
//   import { Sluice } from "/static/sluice.js";
//   const sluice = new Sluice();
//   const job = await sluice.createJob({ model: "gpt-4o-mini", messages });
//   const stream = sluice.stream(job);
//   stream.on("delta", (e) => render(e.text));          // the text so far
//   stream.on("tool_call", (e) => show(e.call));         // a tool call as assembled so far
//   const result = await stream.result;                 // {status, text, message, choices, usage, …}
//
// A choice is rebuilt from its fragments as docs/events.md says: `content`, `reasoning`
// and `refusal` are concatenated, tool calls are assembled per call index in OpenAI's
// message shape (`{id, type, function: {name, arguments}}`), and a `reset` clears it all.
//
// Or iterate: `for await (const event of sluice.stream(job)) { … }`.
//
// Joining a long answer late? `sluice.stream(job, { snapshot: true })` asks the gateway for
// one `snapshot` event of the answer so far instead of every delta again (docs/events.md);
// it replaces the choices (`stream.on("snapshot", (e) => render(e.text))`), and the deltas
// after it apply on top. Reconnects resume after the last id as always.

const TERMINAL = new Set(["done", "error", "cancelled"]);
const EVENT_TYPES = ["started", "snapshot", "delta", "reset", ...TERMINAL];

/** A tool call's state as OpenAI's message shape (`custom: {name, input}` for a custom tool). */
function toolCall({ id, type, name, arguments: args }) {
  if (type === "custom") return { id, type, custom: { name, input: args } };
  return { id, type: type || "function", function: { name, arguments: args } };
}

/** An error answered by the gateway or carried by a job's `error` event. */
export class SluiceError extends Error {
  constructor(error = {}, httpStatus = undefined) {
    super(error.message || "request failed");
    this.name = "SluiceError";
    this.type = error.type || "error";
    this.param = error.param;
    this.jobId = error.job_id; // conversation_busy: the conversation's running job
    this.status = error.status ?? httpStatus; // the upstream's status when it refused
    this.code = error.code;
    this.httpStatus = httpStatus;
  }
}

export class Sluice {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] where the gateway is ("" = this origin)
   * @param {Record<string,string>} [options.headers] extra headers for JSON requests
   * @param {typeof EventSource} [options.EventSource] an EventSource implementation
   *   (default: the global one; in Node, pass one, with an absolute baseUrl)
   */
  constructor({ baseUrl = "", headers = {}, EventSource: eventSource } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.headers = headers;
    this.EventSource = eventSource || globalThis.EventSource;
  }

  url(path) {
    return /^https?:/.test(path) ? path : this.baseUrl + path;
  }

  async request(method, path, body, headers = {}) {
    let response;
    try {
      response = await fetch(this.url(path), {
        method,
        headers: { ...this.headers, ...headers, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (cause) {
      throw new SluiceError({ type: "network_error", message: `cannot reach the gateway (${cause.message})` });
    }
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new SluiceError(payload.error || { message: `HTTP ${response.status}` }, response.status);
    }
    return payload;
  }

  /** Start a job; `params` are OpenAI chat-completion parameters. */
  createJob(params, { idempotencyKey } = {}) {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    return this.request("POST", "/v1/jobs", params, headers);
  }

  getJob(id) {
    return this.request("GET", `/v1/jobs/${encodeURIComponent(id)}`);
  }

  /** Cancel on the server (idempotent); resolves to the job's final state. */
  cancel(id) {
    return this.request("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`);
  }

  async models() {
    return (await this.request("GET", "/v1/models")).data;
  }

  /**
   * A conversation: a series of jobs (its turns), one running at a time, that any tab
   * can follow without knowing the job (`conversation(id).follow()`).
   */
  conversation(id) {
    return new Conversation(this, id);
  }

  /**
   * Follow a job's events.
   * @param {object|string} job the object createJob returned, or a job id
   * @param {object} [options]
   * @param {number} [options.after] resume after this event id (0 = from the start)
   * @param {boolean} [options.snapshot] from the start: the answer so far as one
   *   `snapshot` event, then the events after it (for a late joiner of a long answer)
   */
  stream(job, options = {}) {
    return new JobStream(this, typeof job === "string" ? { id: job } : job, options);
  }
}

/**
 * A job's event stream. Emits `started`, `delta`, `reset`, `done`, `error`, `cancelled`
 * (each a CustomEvent whose `detail` is {id, type, data, …}) and `status`
 * ("connecting", "open", "reconnecting", "done", "error", "cancelled", "closed").
 * After a `delta`, one of `tool_call`, `reasoning` or `refusal` when that is the fragment
 * it carries (with the choice's call, reasoning or refusal as assembled so far).
 */
export class JobStream extends EventTarget {
  constructor(client, job, { after = 0, maxRetryDelay = 10000, snapshot = false } = {}) {
    super();
    this.client = client;
    this.job = job;
    this.lastEventId = after;
    this.snapshot = snapshot;
    this.maxRetryDelay = maxRetryDelay;
    this.status = "connecting";
    this.choices = [];
    this.usage = null;
    this.usageEstimated = null;
    this.finishReasons = [];
    this.error = null;
    this._calls = []; // per choice: call index -> {id, type, name, arguments}
    this._queue = [];
    this._iterating = false;
    this._wake = null;
    this._retries = 0;
    this._timer = null;
    this.result = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.result.catch(() => {}); // callers who only listen to events need not catch
    this._connect();
  }

  get ended() {
    return TERMINAL.has(this.status) || this.status === "closed";
  }

  /** Shorthand for addEventListener that passes `detail`. Returns an unsubscribe function. */
  on(type, callback) {
    const listener = (event) => callback(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /** The text of choice `index` so far (since the last reset). */
  text(index = 0) {
    return this.choices[index]?.content ?? "";
  }

  /** Stop listening (the job goes on on the server; use client.cancel to stop it). */
  close() {
    this._teardown();
    if (!this.ended) {
      this._setStatus("closed");
      this._resolve(this._summary("closed"));
      this._push(null);
    }
  }

  _eventsUrl() {
    const base = this.job.events_url || `/v1/jobs/${encodeURIComponent(this.job.id)}/events`;
    const url = new URL(this.client.url(base), globalThis.location?.href);
    url.searchParams.set("after", String(this.lastEventId));
    return this._snapshotParam(url, !this.lastEventId);
  }

  /** `snapshot=1` on a URL with no cursor when asked for (the gateway ignores it with one). */
  _snapshotParam(url, fromStart) {
    if (this.snapshot && fromStart) url.searchParams.set("snapshot", "1");
    else url.searchParams.delete("snapshot");
    return url.toString();
  }

  _connect() {
    this._teardown();
    const EventSourceImpl = this.client.EventSource;
    if (!EventSourceImpl) throw new Error("no EventSource here: pass new Sluice({ EventSource })");
    const source = new EventSourceImpl(this._eventsUrl());
    this._source = source;
    source.onopen = () => {
      this._retries = 0;
      this._setStatus("open");
    };
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (event) => this._onMessage(type, event));
    }
    source.addEventListener("error", (event) => {
      if (event.data) return; // the job's own error event (a MessageEvent with data)
      this._onConnectionError(source);
    });
  }

  _onConnectionError(source) {
    if (this.ended || source !== this._source) return;
    if (source.readyState === 0 /* CONNECTING */) {
      this._setStatus("reconnecting"); // the browser retries with Last-Event-ID
      return;
    }
    // The browser gave up (an HTTP error, or 204 from a job that already ended): ask the
    // gateway what happened, then reconnect from our last id with backoff.
    this._setStatus("reconnecting");
    source.close();
    const delay = Math.min(this.maxRetryDelay, 500 * 2 ** this._retries++);
    this._timer = setTimeout(() => this._recover(), delay);
  }

  /** The job's poll view, to learn whether anything is left to stream (null: go on). */
  _poll() {
    return this.client.getJob(this.job.id);
  }

  async _recover() {
    if (this.ended) return;
    try {
      const job = await this._poll();
      if (job && job.last_event_id <= this.lastEventId && ["succeeded", "failed", "cancelled"].includes(job.status)) {
        // nothing left to stream, yet no terminal event reached us: finish from the poll view
        this._finishFromPoll(job);
        return;
      }
    } catch (error) {
      if (error instanceof SluiceError && error.httpStatus === 404) {
        this._fail(error);
        return;
      }
      // gateway unreachable: keep trying
    }
    this._connect();
  }

  /** The event's id in this job's log (a conversation's ids also name the job). */
  _eventId(event) {
    return Number(event.lastEventId);
  }

  _onMessage(type, event) {
    const id = this._eventId(event);
    if (!Number.isInteger(id) || id <= this.lastEventId) return; // already applied
    this.lastEventId = id;
    const data = JSON.parse(event.data);
    const detail = { id, type, data };
    let fragmentEvent = null;
    if (type === "delta") {
      const choice = this._choice(data.index ?? 0);
      fragmentEvent = this._apply(choice, data);
      Object.assign(detail, {
        index: choice.index,
        content: data.content ?? "",
        reasoning: data.reasoning ?? "",
        refusal: data.refusal ?? "",
        toolCall: data.tool_call ?? null,
        text: choice.content,
        choice,
      });
    } else if (type === "snapshot") {
      // the answer up to this id, folded by the gateway: it replaces what we have
      this._adopt(data.choices || []);
      Object.assign(detail, { choices: this.choices, text: this.text(0), message: this.message(0) });
    } else if (type === "reset") {
      this.choices = [];
      this._calls = [];
    } else if (type === "done") {
      this.usage = data.usage;
      this.usageEstimated = data.usage_estimated;
      this.finishReasons = data.finish_reasons || [];
      this.finishReasons.forEach((reason, index) => (this._choice(index).finishReason = reason));
      Object.assign(detail, { choices: this.choices, message: this.message(0) });
    } else if (type === "cancelled") {
      this.usage = data.usage;
      this.usageEstimated = data.usage_estimated;
    } else if (type === "error") {
      this.error = new SluiceError(data.error);
    }
    this.dispatchEvent(new CustomEvent(type, { detail }));
    if (fragmentEvent) {
      const fragmentDetail = { id, type: fragmentEvent.type, data, index: detail.index, ...fragmentEvent };
      this.dispatchEvent(new CustomEvent(fragmentEvent.type, { detail: fragmentDetail }));
    }
    this._push(detail);
    if (TERMINAL.has(type)) this._finish(type);
  }

  /**
   * Apply a delta's fragment to its choice (docs/events.md: one fragment per delta; any
   * other field present is applied too); what to emit besides `delta`, if anything.
   */
  _apply(choice, data) {
    const logprobs = Array.isArray(data.logprobs) && data.logprobs.length ? data.logprobs : null;
    let extra = null;
    if (typeof data.content === "string") {
      choice.content += data.content;
      if (logprobs) this._logprobs(choice, "content", logprobs);
    }
    if (typeof data.reasoning === "string") {
      choice.reasoning += data.reasoning;
      extra = { type: "reasoning", fragment: data.reasoning, reasoning: choice.reasoning };
    }
    if (typeof data.refusal === "string") {
      choice.refusal += data.refusal;
      if (logprobs) this._logprobs(choice, "refusal", logprobs);
      extra = { type: "refusal", fragment: data.refusal, refusal: choice.refusal };
    }
    const fragment = data.tool_call;
    if (fragment && typeof fragment === "object") {
      const callIndex = Number.isInteger(fragment.index) && fragment.index >= 0 ? fragment.index : 0;
      const calls = (this._calls[choice.index] ||= new Map());
      let state = calls.get(callIndex);
      if (!state) calls.set(callIndex, (state = { id: "", type: "", name: "", arguments: "" }));
      // the first non-empty id, type and name win (some providers repeat them)
      state.id ||= typeof fragment.id === "string" ? fragment.id : "";
      state.type ||= typeof fragment.type === "string" ? fragment.type : "";
      state.name ||= typeof fragment.name === "string" ? fragment.name : "";
      state.arguments += typeof fragment.arguments === "string" ? fragment.arguments : "";
      const order = [...calls.keys()].sort((x, y) => x - y);
      choice.toolCalls = order.map((i) => toolCall(calls.get(i)));
      const call = choice.toolCalls[order.indexOf(callIndex)];
      extra = { type: "tool_call", callIndex, fragment, call, toolCalls: choice.toolCalls };
    }
    return extra;
  }

  _logprobs(choice, field, tokens) {
    choice.logprobs ||= { content: null, refusal: null };
    choice.logprobs[field] = (choice.logprobs[field] || []).concat(tokens);
  }

  _choice(index) {
    while (this.choices.length <= index) {
      this.choices.push({ index: this.choices.length, content: "", reasoning: "", refusal: "", toolCalls: [], logprobs: null, finishReason: null });
    }
    return this.choices[index];
  }

  /**
   * Choice `index` as OpenAI's assistant message, ready to append to `messages`:
   * `{role, content, refusal?, tool_calls?}` (`content` null for a turn that only calls
   * tools). Reasoning is not part of it (providers refuse it back); read `choice.reasoning`.
   */
  message(index = 0) {
    const choice = this.choices[index];
    const message = { role: "assistant", content: choice?.content ?? "" };
    if (choice?.refusal) message.refusal = choice.refusal;
    if (choice?.toolCalls.length) {
      message.tool_calls = choice.toolCalls;
      if (!choice.content) message.content = null;
    }
    return message;
  }

  _summary(status) {
    return {
      id: this.job.id,
      status,
      choices: this.choices,
      text: this.text(0),
      reasoning: this.choices[0]?.reasoning ?? "",
      refusal: this.choices[0]?.refusal ?? "",
      toolCalls: this.choices[0]?.toolCalls ?? [],
      message: this.message(0),
      usage: this.usage,
      usageEstimated: this.usageEstimated,
      finishReasons: this.finishReasons,
      lastEventId: this.lastEventId,
    };
  }

  _finish(type) {
    this._teardown();
    this._setStatus(type);
    if (type === "error") this._reject(this.error);
    else this._resolve(this._summary(type === "done" ? "succeeded" : "cancelled"));
    this._push(null);
  }

  /**
   * Take choices in the poll view's shape (a `snapshot` event's, or the poll's) as ours,
   * with each tool call's state, so that later `tool_call` fragments continue it (a
   * snapshot's calls carry their `index`; the poll's are in index order).
   */
  _adopt(choices) {
    this._calls = [];
    this.choices = [];
    for (const c of choices) {
      const calls = new Map();
      (c.tool_calls || []).forEach((call, position) => {
        const body = call.type === "custom" ? call.custom || {} : call.function || {};
        const args = call.type === "custom" ? body.input : body.arguments;
        const index = Number.isInteger(call.index) ? call.index : position;
        calls.set(index, { id: call.id || "", type: call.type || "", name: body.name || "", arguments: args || "" });
      });
      const order = [...calls.keys()].sort((x, y) => x - y);
      const choice = this._choice(c.index);
      Object.assign(choice, {
        content: c.content || "",
        reasoning: c.reasoning || "",
        refusal: c.refusal || "",
        toolCalls: order.map((i) => toolCall(calls.get(i))),
        logprobs: c.logprobs || null,
        finishReason: c.finish_reason ?? null,
      });
      if (calls.size) this._calls[c.index] = calls;
    }
  }

  _finishFromPoll(job) {
    this._adopt(job.choices);
    this.usage = job.usage;
    this.usageEstimated = job.usage_estimated;
    if (job.status === "failed") {
      this.error = new SluiceError(job.error || {});
      this._finish("error");
    } else {
      this._finish(job.status === "succeeded" ? "done" : "cancelled");
    }
  }

  _fail(error) {
    this.error = error;
    this._finish("error");
  }

  _teardown() {
    clearTimeout(this._timer);
    if (this._source) {
      this._source.close();
      this._source = null;
    }
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: { status } }));
  }

  _push(item) {
    if (!this._iterating) return; // buffer only for an active iterator
    this._queue.push(item);
    if (this._wake) {
      this._wake();
      this._wake = null;
    }
  }

  /**
   * Iterate the events in order; ends after the terminal event (or close()). Start
   * iterating right after stream() (events are buffered from then on).
   */
  async *[Symbol.asyncIterator]() {
    this._iterating = true;
    if (this.ended) return;
    for (;;) {
      while (this._queue.length === 0) await new Promise((wake) => (this._wake = wake));
      const item = this._queue.shift();
      if (item === null) return;
      yield item;
    }
  }
}

/**
 * A conversation's turns. `send` starts the next one (`params` as for createJob); while
 * one runs the gateway refuses another with a SluiceError of type "conversation_busy"
 * (its `jobId` is the running turn): cancel it first, or wait for its end.
 */
export class Conversation {
  constructor(client, id) {
    this.client = client;
    this.id = id;
    this.job = null; // the last turn this client started
  }

  _path(suffix = "") {
    return `/v1/conversations/${encodeURIComponent(this.id)}${suffix}`;
  }

  async send(params, options = {}) {
    this.job = await this.client.createJob({ ...params, conversation_id: this.id }, options);
    return this.job;
  }

  /** `{id, object, job}`: the latest turn's poll view (as getJob's). */
  get() {
    return this.client.request("GET", this._path());
  }

  /** Cancel the running turn, whoever started it (idempotent). */
  cancel() {
    return this.client.request("POST", this._path("/cancel"));
  }

  /**
   * Follow the latest turn: from its first event, then live, as a JobStream (a second
   * tab, a page reloaded mid-answer). It ends with that turn; follow again for the next.
   */
  follow(options = {}) {
    return new ConversationStream(this.client, this, options);
  }
}

/**
 * A JobStream over `/v1/conversations/<id>/events`, whose event ids are `<job id>/<n>`.
 * If the conversation moved on to another turn while it was reconnecting, the stream
 * starts over with that turn (as after a `reset`).
 */
export class ConversationStream extends JobStream {
  constructor(client, conversation, options = {}) {
    super(client, { id: undefined, conversation }, { ...options, after: 0 });
  }

  _eventsUrl() {
    const { conversation } = this.job;
    const base = conversation.job?.conversation_events_url || conversation._path("/events");
    const url = new URL(this.client.url(base), globalThis.location?.href);
    url.searchParams.set("after", this.job.id ? `${this.job.id}/${this.lastEventId}` : "0");
    return this._snapshotParam(url, !this.job.id || !this.lastEventId);
  }

  _eventId(event) {
    const raw = String(event.lastEventId);
    const slash = raw.lastIndexOf("/");
    const jobId = raw.slice(0, slash);
    if (slash < 1) return NaN;
    if (jobId !== this.job.id) {
      // another turn than the one followed so far: start over with it
      this.job = { ...this.job, id: jobId };
      this.lastEventId = 0;
      this.choices = [];
      this._calls = [];
    }
    return Number(raw.slice(slash + 1));
  }

  async _poll() {
    const { job } = await this.job.conversation.get();
    if (this.job.id && job.id !== this.job.id) return null; // the next turn: stream it
    this.job = { ...this.job, id: job.id };
    return job;
  }
}
