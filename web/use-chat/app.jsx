// A chat page as an app would write it with the AI SDK: useChat with its default transport
// (POST /api/chat, GET /api/chat/<id>/stream on load: `resume: true`), served from the
// gateway's origin. The chat id comes from ?chat=…; the messages of a reloaded chat from
// GET /api/chat/<id>, fetched before useChat renders; ?model=… goes with each message.
// Everything the model wrote is rendered as text (React sets textContent), never as HTML.
import { useChat } from "@ai-sdk/react";
import { useState } from "react";
import { createRoot } from "react-dom/client";

const query = new URLSearchParams(location.search);
const chatId = query.get("chat") || crypto.randomUUID();
const model = query.get("model");

async function savedMessages(id) {
  const response = await fetch(`/api/chat/${encodeURIComponent(id)}`);
  if (response.status === 404) return [];
  if (!response.ok) throw new Error(`GET /api/chat/${id}: ${response.status}`);
  return (await response.json()).messages;
}

function toolName(part) {
  return part.type === "dynamic-tool" ? part.toolName : part.type.slice("tool-".length);
}

function Part({ part }) {
  if (part.type === "text") return <p className="text">{part.text}</p>;
  if (part.type === "reasoning") return <p className="reasoning">{part.text}</p>;
  if (part.type.startsWith("tool-") || part.type === "dynamic-tool") {
    return (
      <div className="tool" data-name={toolName(part)} data-state={part.state}>
        {JSON.stringify(part.input ?? null)}
      </div>
    );
  }
  return null;
}

function Chat({ id, initialMessages }) {
  const { messages, sendMessage, stop, status, error } = useChat({
    id,
    messages: initialMessages,
    resume: true,
  });
  const [input, setInput] = useState("");

  function send(event) {
    event.preventDefault();
    sendMessage({ text: input }, model ? { body: { model } } : undefined);
    setInput("");
  }

  async function stopAnswer() {
    await stop(); // drops this page's connection…
    await fetch(`/api/chat/${encodeURIComponent(id)}/stop`, { method: "POST" }); // …and the job
  }

  return (
    <main data-status={status}>
      <section id="messages">
        {messages.map((message) => (
          <article key={message.id} className={message.role} data-id={message.id}>
            {message.parts.map((part, i) => (
              <Part key={i} part={part} />
            ))}
          </article>
        ))}
      </section>
      {error && <p role="alert">{error.message}</p>}
      <form onSubmit={send}>
        <input id="prompt" value={input} onChange={(e) => setInput(e.target.value)} />
        <button id="send" type="submit">Send</button>
        <button id="stop" type="button" onClick={stopAnswer}>Stop</button>
      </form>
    </main>
  );
}

const initialMessages = await savedMessages(chatId);
createRoot(document.getElementById("root")).render(
  <Chat id={chatId} initialMessages={initialMessages} />,
);
