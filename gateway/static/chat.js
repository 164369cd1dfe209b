// The chat page: a multi-turn conversation over Sluice jobs, with the typing effect.
//
// Model output is untrusted: the answer is rendered as Markdown by `marked` and then
// sanitised by DOMPurify before it touches the DOM; everything else the model writes (its
// reasoning, a refusal, tool calls' names and arguments, a JSON answer) and the user's
// words and file names are set as text (textContent), never parsed as HTML. The page's
// Content-Security-Policy (set by the gateway) is a second wall: no inline script runs
// and no image loads from another origin.

import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";
import { Sluice, SluiceError } from "./sluice.js";

const STORE_SETTINGS = "sluice.settings.v1";
const STORE_CHAT = "sluice.conversation.v1";
const NUMBER_FIELDS = ["temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty"];
// The gateway refuses request bodies over SLUICE_MAX_BODY_BYTES (10,000,000 by default). An
// image travels as a base64 data URL, a third larger than the file: 5 MB of image is about
// 6.7 MB of request, which leaves room for the conversation's text. (A gateway configured
// lower answers 413, which the page reports.)
const MAX_BODY_BYTES = 10_000_000;
const MAX_IMAGE_BYTES = 5_000_000;
const IMAGE_TYPES = { png: "image/png", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp" };
const DATA_URL = /^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/]*={0,2}$/;

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
  attach: $("attach"),
  attachButton: $("attach-button"),
  attachment: $("attachment"),
  attachError: $("attach-error"),
  json: $("json-mode"),
};

/**
 * A user turn: {role, content, image?: {name, size, url}}; an assistant turn: {role,
 * content, reasoning?, refusal?, toolCalls?, job}.
 * @type {object[]}
 */
let conversation = load(STORE_CHAT, []);
let active = null; // {stream, message, view}
let pending = null; // the image attached to the next message: {name, size, url}

// ---- storage -----------------------------------------------------------------------

function load(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

function save() {
  // Over the browser's storage quota (a few MB; images are big), the oldest pictures are
  // not kept, the words always are. This tab keeps them all while it is open.
  let stored = conversation;
  for (;;) {
    try {
      localStorage.setItem(STORE_CHAT, JSON.stringify(stored));
      return;
    } catch {
      const oldest = stored.findIndex((m) => m.image?.url);
      if (oldest === -1) return; // nothing more to shed
      stored = stored.map((m, i) => (i === oldest ? { ...m, image: { name: m.image.name, size: m.image.size } } : m));
    }
  }
}

function readSettings() {
  const form = new FormData(els.settings);
  const settings = Object.fromEntries(form.entries());
  settings.json_output = els.json.checked;
  return settings;
}

function saveSettings() {
  localStorage.setItem(STORE_SETTINGS, JSON.stringify(readSettings()));
}

function restoreSettings() {
  const saved = load(STORE_SETTINGS, {});
  els.json.checked = saved.json_output === true;
  for (const [name, value] of Object.entries(saved)) {
    if (name === "json_output") continue;
    const field = els.settings.elements.namedItem(name);
    if (field) field.value = value;
  }
}

// ---- rendering -----------------------------------------------------------------------

// Raw HTML in an answer is shown as text, as ChatGPT shows it: a model that echoes
// `<img src=x>` means the characters, and sanitised markup would render as a broken image.
const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

// A Markdown image shows as a link to it, never as an <img>: loading it would send its URL,
// which a prompt-injected model can fill with the conversation, to any origin without a
// click. The CSP blocks such a load too; this keeps the first wall whole on its own.
marked.use({
  gfm: true,
  breaks: true,
  renderer: {
    html({ text, block }) {
      return block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text);
    },
    image({ href, text }) {
      return `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`;
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
  payload_too_large: "The message is too large for this server (its request size limit): attach a smaller image or start a new chat.",
};

function describeError(error) {
  const lead = ERROR_WORDS[error.type] || "The answer failed.";
  return error.message && !lead.includes(error.message) ? `${lead} ${error.message}` : lead;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function formatBytes(bytes) {
  if (bytes < 1000) return `${bytes} bytes`;
  if (bytes < 1_000_000) return `${Math.round(bytes / 100) / 10} kB`;
  return `${Math.round(bytes / 100_000) / 10} MB`;
}

/** A tool call's arguments for reading: pretty-printed once they are complete JSON. */
function formatArguments(text) {
  try {
    const value = JSON.parse(text);
    if (value !== null && typeof value === "object") return { text: JSON.stringify(value, null, 2), json: true };
  } catch {
    // not (yet) complete JSON: shown as written
  }
  return { text, json: false };
}

function messageView(message) {
  const article = element("article", `message ${message.role}`);
  const who = element("h2", "visually-hidden", message.role === "user" ? "You said" : "Assistant said");
  const body = element("div", "body");
  const meta = element("div", "meta");
  const view = { article, body, meta, message };
  if (message.role === "user") {
    article.append(who, body);
    if (message.image) article.append(imageView(message.image));
    article.append(meta);
  } else {
    // reasoning, refusal and tool calls keep their elements across repaints, so a
    // <details> the reader opened stays open while the answer streams
    view.reasoning = element("details", "reasoning");
    view.reasoningLabel = element("summary", "", "Reasoning");
    view.reasoningText = element("div", "reasoning-text");
    view.reasoning.append(view.reasoningLabel, view.reasoningText);
    view.reasoning.hidden = true;
    view.refusal = element("div", "refusal");
    view.refusal.setAttribute("role", "note");
    view.refusalText = element("p", "refusal-text");
    view.refusal.append(element("strong", "refusal-label", "The model refused"), view.refusalText);
    view.refusal.hidden = true;
    view.tools = element("div", "tool-calls");
    view.calls = [];
    article.append(who, view.reasoning, body, view.refusal, view.tools, meta);
  }
  paint(view);
  return view;
}

/** The picture attached to a user turn: a thumbnail and its name, as text. */
function imageView(image) {
  const figure = element("figure", "attachment-view");
  if (typeof image.url === "string" && DATA_URL.test(image.url)) {
    const img = element("img");
    img.src = image.url;
    img.alt = `Attached image ${image.name || ""}`.trim();
    figure.append(img);
  } else {
    figure.append(element("span", "attachment-missing", "Image not kept in this browser"));
  }
  figure.append(element("figcaption", "", `${image.name || "image"} · ${formatBytes(image.size || 0)}`));
  return figure;
}

function paintAnswer(view) {
  const { message, body } = view;
  const content = message.content || "";
  if (!message.job?.json) {
    body.innerHTML = renderMarkdown(content);
    return;
  }
  // JSON output: a pretty-printed code block once the answer parses; as written before
  body.replaceChildren();
  if (!content) return;
  let pretty = null;
  try {
    pretty = JSON.stringify(JSON.parse(content), null, 2);
  } catch {
    // still streaming, or not JSON after all
  }
  const pre = element("pre", pretty === null ? "json-output partial" : "json-output");
  pre.append(element("code", "language-json", pretty ?? content));
  body.append(pre);
  if (pretty === null && message.job.status === "succeeded") {
    body.append(note("The answer is not valid JSON.", "notice"));
  }
}

function paintReasoning(view) {
  const { message, reasoning, reasoningLabel, reasoningText } = view;
  const text = message.reasoning || "";
  reasoning.hidden = !text;
  const thinking = message.job?.status === "streaming" && !message.content && !message.toolCalls?.length;
  reasoningLabel.textContent = thinking ? "Thinking…" : "Reasoning";
  if (reasoningText.textContent !== text) reasoningText.textContent = text;
}

function paintRefusal(view) {
  const text = view.message.refusal || "";
  view.refusal.hidden = !text;
  if (view.refusalText.textContent !== text) view.refusalText.textContent = text;
}

function paintToolCalls(view) {
  const calls = view.message.toolCalls || [];
  while (view.calls.length > calls.length) view.calls.pop().root.remove();
  calls.forEach((call, i) => {
    let v = view.calls[i];
    if (!v) {
      v = { root: element("details", "tool-call") };
      v.root.open = true;
      v.summary = element("summary");
      v.name = element("code", "tool-name");
      v.summary.append(element("span", "tool-label", "Tool call"), " ", v.name);
      v.args = element("code", "tool-arguments");
      const pre = element("pre");
      pre.append(v.args);
      v.root.append(v.summary, pre);
      view.tools.append(v.root);
      view.calls.push(v);
    }
    const fn = call.type === "custom" ? call.custom : call.function;
    const name = String(fn?.name || "(unnamed)");
    const raw = String((call.type === "custom" ? fn?.input : fn?.arguments) ?? "");
    const args = formatArguments(raw);
    v.root.dataset.index = String(i);
    if (call.id) v.root.dataset.callId = String(call.id);
    v.root.dataset.complete = String(args.json);
    if (v.name.textContent !== name) v.name.textContent = name;
    const shown = args.text || "(no arguments)";
    if (v.args.textContent !== shown) v.args.textContent = shown;
  });
}

function paint(view) {
  const { message, body, meta, article } = view;
  if (message.role === "user") {
    body.textContent = message.content; // the user's own words, never parsed as HTML
  } else {
    paintReasoning(view);
    paintAnswer(view);
    paintRefusal(view);
    paintToolCalls(view);
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
  if (job.imagesLeftOut) {
    meta.append(note(`${job.imagesLeftOut} earlier image${job.imagesLeftOut > 1 ? "s were" : " was"} left out to fit the gateway's request size limit.`, "notice"));
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
  if (settings.json_output) params.response_format = { type: "json_object" };
  const messages = [];
  if (settings.system?.trim()) messages.push({ role: "system", content: settings.system.trim() });
  // An assistant turn goes back as its text only: a turn without text (only tool calls,
  // which this page does not run, or a refusal) is left out, as a failed one is.
  const turns = conversation.filter((m) => !(m.role === "assistant" && (m.job?.status === "failed" || !m.content)));
  const withImage = turns.filter((m) => m.image && DATA_URL.test(m.image.url || ""));
  // Under the gateway's body limit: the oldest images give way first (the text stays).
  let keep = withImage.length;
  let built;
  for (;;) {
    const kept = new Set(withImage.slice(withImage.length - keep));
    built = [...messages, ...turns.map((m) => wireMessage(m, kept.has(m)))];
    if (keep === 0 || jsonBytes({ ...params, messages: built }) <= MAX_BODY_BYTES) break;
    keep -= 1;
  }
  params.messages = built;
  return { params, imagesLeftOut: withImage.length - keep };
}

function wireMessage(m, withImage) {
  if (m.role !== "user" || !m.image) return { role: m.role, content: m.content };
  const parts = [];
  if (m.content) parts.push({ type: "text", text: m.content });
  if (withImage) parts.push({ type: "image_url", image_url: { url: m.image.url, detail: "auto" } });
  else parts.push({ type: "text", text: `[an image, ${m.image.name || "unnamed"}, was attached here]` });
  return { role: "user", content: parts };
}

const jsonBytes = (value) => new TextEncoder().encode(JSON.stringify(value)).length;

async function ask() {
  applyAccessKey();
  const { params, imagesLeftOut } = requestParams();
  const assistant = { role: "assistant", content: "", job: { status: "queued", json: Boolean(params.response_format), imagesLeftOut } };
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
    if (e.index === 0) copyChoice(message, e.choice);
    job.lastEventId = e.id;
    schedule();
  });
  stream.on("reset", () => {
    copyChoice(message, null);
    schedule();
  });
  stream.on("status", ({ status }) => {
    job.reconnecting = status === "reconnecting";
    setConnection(job.reconnecting ? "Reconnecting…" : "");
    schedule();
  });
  stream.result
    .then((result) => {
      copyChoice(message, result.choices[0]);
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

/** What the page keeps of choice 0: its text, reasoning, refusal and tool calls. */
function copyChoice(message, choice) {
  message.content = choice?.content ?? "";
  for (const [key, value] of [["reasoning", choice?.reasoning], ["refusal", choice?.refusal], ["toolCalls", choice?.toolCalls]]) {
    if (value?.length) message[key] = value;
    else delete message[key];
  }
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
  if ((!text && !pending) || active) return;
  if (!els.settings.reportValidity()) {
    $("settings").open = true;
    return;
  }
  conversation.push(pending ? { role: "user", content: text, image: pending } : { role: "user", content: text });
  setAttachment(null);
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

// ---- attaching an image ----------------------------------------------------------------

/** The image type a file's first bytes say, whatever its name or claimed type. */
async function sniffImage(file) {
  const b = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const ascii = (from, to) => String.fromCharCode(...b.slice(from, to));
  if (b[0] === 0x89 && ascii(1, 4) === "PNG") return IMAGE_TYPES.png;
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return IMAGE_TYPES.jpeg;
  if (ascii(0, 4) === "GIF8") return IMAGE_TYPES.gif;
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return IMAGE_TYPES.webp;
  return null;
}

function readDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function attachError(text) {
  els.attachError.textContent = text;
  els.attachError.hidden = !text;
}

async function attachFile(file) {
  attachError("");
  const type = await sniffImage(file);
  if (!type) {
    attachError(`“${file.name}” is not an image this page can send: attach a PNG, JPEG, GIF or WebP file.`);
    return;
  }
  if (file.size > MAX_IMAGE_BYTES) {
    const size = `${file.size.toLocaleString("en-US")} bytes`;
    attachError(`“${file.name}” is ${size}: images can be up to ${formatBytes(MAX_IMAGE_BYTES)}, to fit the gateway's request size limit.`);
    return;
  }
  const url = await readDataUrl(new Blob([file], { type }));
  setAttachment({ name: file.name, size: file.size, url });
}

function setAttachment(image) {
  pending = image;
  els.attachment.replaceChildren();
  els.attachment.hidden = !image;
  if (!image) return;
  const remove = element("button", "secondary remove-attachment", "Remove");
  remove.type = "button";
  remove.setAttribute("aria-label", `Remove ${image.name}`);
  remove.addEventListener("click", () => {
    setAttachment(null);
    els.prompt.focus();
  });
  els.attachment.append(imageView(image), remove);
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
els.attachButton.addEventListener("click", () => els.attach.click());
els.attach.addEventListener("change", () => {
  const file = els.attach.files[0];
  els.attach.value = ""; // the same file can be picked again
  if (file) attachFile(file).catch((error) => attachError(`The image could not be read: ${error.message}`));
});
els.json.addEventListener("change", saveSettings);
els.settings.addEventListener("input", saveSettings);
els.settings.elements.namedItem("access_key").addEventListener("change", loadModels);
els.newChat.addEventListener("click", () => {
  if (active) active.stream.close();
  active = null;
  conversation = [];
  setAttachment(null);
  attachError("");
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
  copyChoice(unfinished, null); // the stream replays it from its first event
  follow(unfinished, view);
} else {
  setBusy(false);
}
