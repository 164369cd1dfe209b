// Reads UI message streams with the AI SDK's own parser and message builder (ai's
// parseJsonEventStream with uiMessageChunkSchema, then readUIMessageStream, as useChat
// does) and prints, per stream, the message it built and the errors it reported, so a
// test can compare them with what the gateway serves. Input (stdin): a JSON list of
// streams as sent (strings); output (stdout): a JSON list of {id, parts, errors}.
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from "ai";

const streams = JSON.parse(await new Response(process.stdin).text());
const out = [];
for (const text of streams) {
  const errors = [];
  const chunks = parseJsonEventStream({
    stream: new Response(text).body,
    schema: uiMessageChunkSchema,
  }).pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        if (!chunk.success) throw chunk.error; // a part the pinned ai does not accept
        controller.enqueue(chunk.value);
      },
    }),
  );
  let message = { id: null, parts: [] };
  for await (const built of readUIMessageStream({
    stream: chunks,
    onError: (error) => errors.push(error.message),
  })) {
    message = built;
  }
  const parts = message.parts.map((part) =>
    Object.fromEntries(Object.entries(part).filter(([, value]) => value !== undefined)),
  );
  out.push({ id: message.id, parts, errors });
}
process.stdout.write(JSON.stringify(out));
