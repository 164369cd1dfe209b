// The openai npm SDK against the gateway, unchanged: tool calls (parallel, streamed, the
// stream helper's parsed arguments), the tool-result round trip, structured output with
// zodResponseFormat, logprobs, an image part.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import OpenAI from "openai";
import { zodFunction, zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";

import {
  BASE_URL,
  FORECAST,
  PNG_DATA_URL,
  TIME,
  TIME_ARGS,
  TOOL_RESULT,
  WEATHER,
  WEATHER_ARGS,
  expectedReply,
  expectedToolReply,
  promptFor,
} from "./support.mjs";

const client = new OpenAI({ baseURL: BASE_URL, apiKey: "not-used", maxRetries: 0 });
after(() => client.close?.());

const user = (content) => [{ role: "user", content }];

test("openai: a tool call, not streamed", async () => {
  const result = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: user(promptFor("openai-tools")),
    tools: [WEATHER, TIME],
  });
  const [choice] = result.choices;
  assert.equal(choice.finish_reason, "tool_calls");
  assert.equal(choice.message.content, null);
  assert.equal(choice.message.tool_calls.length, 1);
  const [call] = choice.message.tool_calls;
  assert.equal(call.type, "function");
  assert.ok(call.id.startsWith("call_"));
  assert.equal(call.function.name, "get_weather");
  assert.deepEqual(JSON.parse(call.function.arguments), WEATHER_ARGS);
});

test("openai: parallel tool calls streamed, reassembled by index", async () => {
  const stream = await client.chat.completions.create({
    model: "gpt-4o-mini;calls=2",
    messages: user(promptFor("openai-tools-stream")),
    tools: [WEATHER, TIME],
    parallel_tool_calls: true,
    stream: true,
  });
  const calls = [];
  const finish = [];
  let fragments = 0;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      for (const delta of choice.delta.tool_calls ?? []) {
        fragments += 1;
        calls[delta.index] ??= { id: "", name: "", arguments: "" };
        calls[delta.index].id += delta.id ?? "";
        calls[delta.index].name += delta.function?.name ?? "";
        calls[delta.index].arguments += delta.function?.arguments ?? "";
      }
      if (choice.finish_reason) finish.push(choice.finish_reason);
    }
  }
  assert.deepEqual(
    calls.map((c) => [c.name, JSON.parse(c.arguments)]),
    [
      ["get_weather", WEATHER_ARGS],
      ["get_time", TIME_ARGS],
    ],
  );
  assert.ok(fragments > 2, `${fragments} fragments`);
  assert.equal(new Set(calls.map((c) => c.id)).size, 2);
  assert.deepEqual(finish, ["tool_calls"]);
});

test("openai: the stream helper parses strict tool arguments (zodFunction)", async () => {
  const stream = client.chat.completions.stream({
    model: "gpt-4o-mini",
    messages: user(promptFor("openai-tools-helper")),
    tools: [zodFunction({ name: "get_weather", parameters: z.object({ city: z.string() }) })],
  });
  const deltas = [];
  stream.on("tool_calls.function.arguments.delta", (e) => deltas.push(e.arguments_delta));
  const final = await stream.finalChatCompletion();
  const [call] = final.choices[0].message.tool_calls;
  assert.equal(call.function.name, "get_weather");
  assert.deepEqual(call.function.parsed_arguments, WEATHER_ARGS);
  assert.equal(deltas.join(""), call.function.arguments);
  assert.ok(deltas.length > 1);
});

test("openai: the tool-result round trip", async () => {
  const messages = user(promptFor("openai-round-trip"));
  const first = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages,
    tools: [WEATHER],
  });
  const message = first.choices[0].message;
  messages.push(message);
  for (const call of message.tool_calls) {
    messages.push({ role: "tool", tool_call_id: call.id, content: TOOL_RESULT });
  }
  const second = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages,
    tools: [WEATHER],
  });
  assert.equal(second.choices[0].message.content, expectedToolReply(TOOL_RESULT));
  assert.equal(second.choices[0].finish_reason, "stop");
});

test("openai: chat.completions.parse with zodResponseFormat", async () => {
  const Forecast = z.object({
    city: z.string(),
    temperature_c: z.number(),
    conditions: z.enum(["sunny", "rainy"]),
  });
  const result = await client.chat.completions.parse({
    model: "gpt-4o-mini",
    messages: user(promptFor("openai-parse")),
    response_format: zodResponseFormat(Forecast, "forecast"),
  });
  assert.deepEqual(result.choices[0].message.parsed, FORECAST);
  assert.equal(result.choices[0].message.refusal, null);
});

test("openai: logprobs, not streamed and streamed", async () => {
  const prompt = promptFor("openai-logprobs");
  const result = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: user(prompt),
    logprobs: true,
    top_logprobs: 2,
  });
  const { content } = result.choices[0].message;
  assert.equal(content, expectedReply(prompt));
  const entries = result.choices[0].logprobs.content;
  assert.equal(entries.map((e) => e.token).join(""), content);
  assert.ok(entries.every((e) => e.top_logprobs.length === 2 && e.logprob <= 0));
  const streamPrompt = promptFor("openai-logprobs-stream");
  const streamed = [];
  let text = "";
  const stream = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: user(streamPrompt),
    logprobs: true,
    top_logprobs: 2,
    stream: true,
  });
  for await (const chunk of stream) {
    const [choice] = chunk.choices;
    text += choice?.delta.content ?? "";
    streamed.push(...(choice?.logprobs?.content ?? []));
  }
  assert.equal(text, expectedReply(streamPrompt));
  assert.equal(streamed.map((e) => e.token).join(""), text);
});

test("openai: a data-URL image part", async () => {
  const prompt = promptFor("openai-image");
  const result = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: user([
      { type: "text", text: prompt },
      { type: "image_url", image_url: { url: PNG_DATA_URL } },
    ]),
  });
  assert.equal(result.choices[0].message.content, expectedReply(prompt, { image: true }));
});
