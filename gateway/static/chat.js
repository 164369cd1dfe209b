// The chat page: a multi-turn conversation over Sluice jobs, with the typing effect.
//
// Model output is untrusted: it is rendered as Markdown by `marked` and then sanitised by
// DOMPurify before it touches the DOM; user messages are shown as plain text. The page's
// Content-Security-Policy (set by the gateway) is a second wall: no inline script runs
// and no image loads from another origin.

import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";
import { Sluice, SluiceError } from "./sluice.js";

const STORE_SETTINGS = "sluice.settings.v1";
const STORE_CHAT = "sluice.conversation.v1";
const NUMBER_FIELDS = ["temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty"];

const sluice = new Sluice();
const $ = (id) => document.getElementById(id);
const els = {
  messages: $("messages"),
  hint: $("empty-hint"),
  composer: $("composer"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop-button"),
  settings: $("settings-form"),
  modelOptions: $("model-options"),
  badge: $("upstream-badge"),
  connection: $("connection"),
  newChat: $("new-chat"),
};

/** @type {{role: string, content: string, job?: object}[]} */
let conversation = load(STORE_CHAT, []);
let active = null; // {stream, message, view}

// ---- storage -----------------------------------------------------------------------

function load(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

function save() {
  localStorage.setItem(STORE_CHAT, JSON.stringify(conversation));
}

function readSettings() {
  const form = new FormData(els.settings);
  const settings = Object.fromEntries(form.entries());
  return settings;
}

function saveSettings() {
  localStorage.setItem(STORE_SETTINGS, JSON.stringify(readSettings()));
}

function restoreSettings() {
  const saved = load(STORE_SETTINGS, {});
  for (const [name, value] of Object.entries(saved)) {
    const field = els.settings.elements.namedItem(name);
    if (field) field.value = value;
  }
}

// ---- rendering -----------------------------------------------------------------------

// Raw HTML in an answer is shown as text, as ChatGPT shows it: a model that echoes
// `<img src=x>` means the characters, and sanitised markup would render as a broken image.
const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

marked.use({
  gfm: true,
  breaks: true,
  renderer: {
    html({ text, block }) {
      return block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text);
    },
  },
});

function renderMarkdown(text) {
  return DOMPurify.sanitize(marked.parse(text), { USE_PROFILES: { html: true } });
}

function nearBottom() {
  const el = document.scrollingElement;
  return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
}

function followBottom(wasNearBottom) {
  if (wasNearBottom) window.scrollTo({ top: document.scrollingElement.scrollHeight });
}

function formatUsage(job) {
  const u = job.usage;
  if (!u) return "";
  const estimated = job.usageEstimated ? " (estimated)" : "";
  return `${u.prompt_tokens} prompt · ${u.completion_tokens} completion · ${u.total_tokens} total tokens${estimated}`;
}

const ERROR_WORDS = {
  upstream_auth_error: "The model provider rejected the API key.",
  upstream_rate_limited: "The model provider is rate limiting requests. Wait a moment and retry.",
  upstream_timeout: "The model provider took too long to answer.",
  upstream_connection_error: "The connection to the model provider broke.",
  context_length_exceeded: "The conversation is too long for this model.",
  network_error: "The gateway cannot be reached.",
  unauthorized: "This server needs an access key: enter it under Model and parameters.",
};

function describeError(error) {
  const lead = ERROR_WORDS[error.type] || "The answer failed.";
  return error.message && !lead.includes(error.message) ? `${lead} ${error.message}` : lead;
}

function messageView(message) {
  const article = document.createElement("article");
  article.className = `message ${message.role}`;
  const who = document.createElement("h2");
  who.className = "visually-hidden";
  who.textContent = message.role === "user" ? "You said" : "Assistant said";
  const body = document.createElement("div");
  body.className = "body";
  const meta = document.createElement("div");
  meta.className = "meta";
  article.append(who, body, meta);
  const view = { article, body, meta, message };
  paint(view);
  return view;
}

function paint(view) {
  const { message, body, meta, article } = view;
  if (message.role === "user") {
    body.textContent = message.content; // the user's own words, never parsed as HTML
  } else {
    body.innerHTML = renderMarkdown(message.content || "");
  }
  const job = message.job;
  meta.replaceChildren();
  if (!job) return;
  article.dataset.jobId = job.id;
  article.dataset.status = job.status;
  article.setAttribute("aria-busy", String(job.status === "streaming"));
  if (job.truncated) {
    meta.append(note(`${job.truncated} older message${job.truncated > 1 ? "s were" : " was"} left out to fit the model's context window.`, "notice"));
  }
  if (job.reconnecting) meta.append(note("Reconnecting…", "reconnecting"));
  if (job.status === "succeeded" || job.status === "cancelled") {
    const parts = [];
    if (job.status === "cancelled") parts.push("Stopped");
    const usage = formatUsage(job);
    if (usage) parts.push(usage);
    if (job.finishReasons?.length) parts.push(`finish: ${job.finishReasons.join(", ")}`);
    meta.append(note(parts.join(" · "), "usage"));
  }
  if (job.status === "failed") {
    const error = note(describeError(job.error || {}), "error");
    error.setAttribute("role", "alert");
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "secondary retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => retryLast());
    meta.append(error, retry);
  }
}

function note(text, kind) {
  const p = document.createElement("p");
  p.className = `note ${kind}`;
  p.textContent = text;
  return p;
}

function renderAll() {
  els.messages.querySelectorAll("article").forEach((a) => a.remove());
  els.hint.hidden = conversation.length > 0;
  for (const message of conversation) els.messages.append(messageView(message).article);
  followBottom(true);
}

function setBusy(busy) {
  els.send.disabled = busy;
  els.stop.hidden = !busy;
  if (!busy) els.prompt.focus();
}

function setConnection(text) {
  els.connection.textContent = text;
}

// ---- jobs ----------------------------------------------------------------------------

function applyAccessKey() {
  const key = (readSettings().access_key || "").trim();
  sluice.headers = key ? { Authorization: `Bearer ${key}` } : {};
}

function requestParams() {
  const settings = readSettings();
  const params = { model: settings.model.trim() };
  for (const name of NUMBER_FIELDS) {
    if (settings[name] !== "" && settings[name] !== undefined) params[name] = Number(settings[name]);
  }
  const stops = (settings.stop || "").split("\n").filter((s) => s !== "").slice(0, 4);
  if (stops.length) params.stop = stops;
  const messages = [];
  if (settings.system?.trim()) messages.push({ role: "system", content: settings.system.trim() });
  for (const m of conversation) {
    if (m.role === "assistant" && (m.job?.status === "failed" || !m.content)) continue;
    messages.push({ role: m.role, content: m.content });
  }
  params.messages = messages;
  return params;
}

async function ask() {
  applyAccessKey();
  const assistant = { role: "assistant", content: "", job: { status: "queued" } };
  const params = requestParams();
  conversation.push(assistant);
  const view = messageView(assistant);
  els.messages.append(view.article);
  followBottom(true);
  setBusy(true);
  try {
    const job = await sluice.createJob(params);
    Object.assign(assistant.job, { id: job.id, events_url: job.events_url, truncated: job.truncated_messages, lastEventId: 0, status: "streaming" });
    save();
    follow(assistant, view);
  } catch (error) {
    assistant.job = { status: "failed", error: error instanceof SluiceError ? error : { message: String(error) } };
    paint(view);
    save();
    setBusy(false);
  }
}

function follow(message, view) {
  const job = message.job;
  const stream = sluice.stream(job, { after: 0 });
  active = { stream, message, view };
  let frame = 0;
  const repaint = () => {
    frame = 0;
    const wasNearBottom = nearBottom();
    paint(view);
    followBottom(wasNearBottom);
  };
  const schedule = () => (frame ||= requestAnimationFrame(repaint));
  stream.on("delta", (e) => {
    if (e.index === 0) message.content = e.text;
    job.lastEventId = e.id;
    schedule();
  });
  stream.on("reset", () => {
    message.content = "";
    schedule();
  });
  stream.on("status", ({ status }) => {
    job.reconnecting = status === "reconnecting";
    setConnection(job.reconnecting ? "Reconnecting…" : "");
    schedule();
  });
  stream.result
    .then((result) => {
      message.content = result.text;
      Object.assign(job, { status: result.status, usage: result.usage, usageEstimated: result.usageEstimated, finishReasons: result.finishReasons });
    })
    .catch((error) => {
      Object.assign(job, { status: "failed", error: { type: error.type, message: error.message, status: error.status } });
    })
    .finally(() => {
      job.reconnecting = false;
      setConnection("");
      if (frame) cancelAnimationFrame(frame);
      repaint();
      save();
      if (active?.stream === stream) active = null;
      setBusy(false);
    });
}

async function stopActive() {
  if (!active) return;
  applyAccessKey();
  const { message } = active;
  els.stop.disabled = true;
  try {
    if (message.job.id) await sluice.cancel(message.job.id); // the stream then ends with `cancelled`
  } catch (error) {
    setConnection(`Could not stop: ${error.message}`);
  } finally {
    els.stop.disabled = false;
  }
}

function retryLast() {
  if (active) return;
  const last = conversation.at(-1);
  if (last?.role === "assistant") conversation.pop();
  renderAll();
  ask();
}

function submit() {
  const text = els.prompt.value.trim();
  if (!text || active) return;
  if (!els.settings.reportValidity()) {
    $("settings").open = true;
    return;
  }
  conversation.push({ role: "user", content: text });
  els.prompt.value = "";
  els.hint.hidden = true;
  els.messages.append(messageView(conversation.at(-1)).article);
  save();
  ask();
}

async function loadModels() {
  applyAccessKey();
  try {
    const models = await sluice.models();
    els.modelOptions.replaceChildren(
      ...models.map((m) => {
        const option = document.createElement("option");
        option.value = m.id;
        option.label = m.context_window ? `${m.id} (${m.context_window.toLocaleString()} tokens)` : m.id;
        return option;
      }),
    );
    els.badge.hidden = !models.some((m) => m.owned_by === "sluice-demo-upstream");
    const model = els.settings.elements.namedItem("model");
    if (!model.value && models.length) {
      model.value = (models.find((m) => m.id === "gpt-4o-mini") || models[0]).id;
      saveSettings();
    }
  } catch (error) {
    setConnection(`Models unavailable: ${error.message}`);
  }
}

// ---- wiring --------------------------------------------------------------------------

els.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
els.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
els.stop.addEventListener("click", stopActive);
els.settings.addEventListener("input", saveSettings);
els.settings.elements.namedItem("access_key").addEventListener("change", loadModels);
els.newChat.addEventListener("click", () => {
  if (active) active.stream.close();
  active = null;
  conversation = [];
  save();
  renderAll();
  setBusy(false);
});

restoreSettings();
renderAll();
loadModels();
// An answer that was still streaming when the page was closed or reloaded resumes.
const unfinished = conversation.at(-1);
if (unfinished?.role === "assistant" && unfinished.job?.status === "streaming" && unfinished.job.id) {
  setBusy(true);
  const view = messageView(unfinished);
  els.messages.lastElementChild.replaceWith(view.article);
  unfinished.content = "";
  follow(unfinished, view);
} else {
  setBusy(false);
}
