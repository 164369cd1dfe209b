// The Vercel AI SDK against the gateway, unchanged: `ai` with @ai-sdk/openai-compatible,
// and @ai-sdk/openai's .chat() (Chat Completions). Tool calls (parallel, streamed), the
// tool-result round trip, structured output, an image part, logprobs.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, isStepCount, Output, streamText, tool } from "ai";
import { z } from "zod";

import {
  BASE_URL,
  FORECAST,
  PNG_BASE64,
  TIME_ARGS,
  TOOL_RESULT,
  WEATHER_ARGS,
  expectedReply,
  expectedToolReply,
  promptFor,
} from "./support.mjs";

const compatible = createOpenAICompatible({
  name: "sluice",
  baseURL: BASE_URL,
  apiKey: "not-used",
  supportsStructuredOutputs: true,
  includeUsage: true,
});
const openai = createOpenAI({ baseURL: BASE_URL, apiKey: "not-used" });

const PROVIDERS = {
  "openai-compatible": { model: (id) => compatible.chatModel(id), options: {} },
  "openai-chat": {
    model: (id) => openai.chat(id),
    options: { openai: { parallelToolCalls: true } },
  },
};

const Forecast = z.object({
  city: z.string(),
  temperature_c: z.number(),
  conditions: z.enum(["sunny", "rainy"]),
});

const tools = () => ({
  get_weather: tool({
    description: "The current weather in a city.",
    inputSchema: z.object({ city: z.string() }),
  }),
  get_time: tool({
    description: "The time in a time zone.",
    inputSchema: z.object({ zone: z.string() }),
  }),
});

const PARALLEL = [
  ["get_weather", WEATHER_ARGS],
  ["get_time", TIME_ARGS],
];

for (const [name, provider] of Object.entries(PROVIDERS)) {
  describe(`ai + ${name}`, () => {
    test("generateText returns parallel tool calls", async () => {
      const result = await generateText({
        model: provider.model("gpt-4o-mini;calls=2"),
        tools: tools(),
        prompt: promptFor(`ai-${name}-tools`),
        providerOptions: provider.options,
        maxRetries: 0,
      });
      assert.deepEqual(
        result.toolCalls.map((c) => [c.toolName, c.input]),
        PARALLEL,
      );
      assert.ok(result.toolCalls.every((c) => c.toolCallId.startsWith("call_")));
      assert.equal(new Set(result.toolCalls.map((c) => c.toolCallId)).size, 2);
      assert.equal(result.finishReason, "tool-calls");
      assert.equal(result.text, "");
    });

    test("streamText streams the calls' arguments and its tool-call parts", async () => {
      const result = streamText({
        model: provider.model("gpt-4o-mini;calls=2"),
        tools: tools(),
        prompt: promptFor(`ai-${name}-tools-stream`),
        providerOptions: provider.options,
        maxRetries: 0,
      });
      const parts = [];
      for await (const part of result.stream) parts.push(part);
      const errors = parts.filter((p) => p.type === "error");
      assert.deepEqual(errors, []);
      const calls = parts.filter((p) => p.type === "tool-call");
      assert.deepEqual(
        calls.map((c) => [c.toolName, c.input]),
        PARALLEL,
      );
      const deltas = parts.filter((p) => p.type === "tool-input-delta");
      assert.ok(deltas.length > 2, `${deltas.length} tool-input-delta parts`);
      assert.deepEqual(
        (await result.toolCalls).map((c) => c.toolCallId),
        calls.map((c) => c.toolCallId),
      );
      assert.equal(await result.finishReason, "tool-calls");
    });

    test("a tool's result goes back and the answer uses it", async () => {
      const executed = [];
      const result = await generateText({
        model: provider.model("gpt-4o-mini"),
        tools: {
          get_weather: tool({
            description: "The current weather in a city.",
            inputSchema: z.object({ city: z.string() }),
            execute: async (input) => {
              executed.push(input);
              return TOOL_RESULT;
            },
          }),
        },
        stopWhen: isStepCount(2),
        prompt: promptFor(`ai-${name}-round-trip`),
        maxRetries: 0,
      });
      assert.deepEqual(executed, [WEATHER_ARGS]);
      assert.equal(result.steps.length, 2);
      assert.equal(result.steps[0].toolCalls[0].toolName, "get_weather");
      assert.equal(result.text, expectedToolReply(TOOL_RESULT));
      assert.equal(result.finishReason, "stop");
    });

    test("Output.object gives the schema's object, generated and streamed", async () => {
      const { output } = await generateText({
        model: provider.model("gpt-4o-mini"),
        output: Output.object({ schema: Forecast }),
        prompt: promptFor(`ai-${name}-structured`),
        maxRetries: 0,
      });
      assert.deepEqual(output, FORECAST);
      const streamed = streamText({
        model: provider.model("gpt-4o-mini"),
        output: Output.object({ schema: Forecast }),
        prompt: promptFor(`ai-${name}-structured-stream`),
        maxRetries: 0,
      });
      assert.deepEqual(await streamed.output, FORECAST);
    });

    test("an image file part reaches the model", async () => {
      const prompt = promptFor(`ai-${name}-image`);
      const { text } = await generateText({
        model: provider.model("gpt-4o-mini"),
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: prompt },
              { type: "file", data: Buffer.from(PNG_BASE64, "base64"), mediaType: "image/png" },
            ],
          },
        ],
        maxRetries: 0,
      });
      assert.equal(text, expectedReply(prompt, { image: true }));
      assert.ok(text.includes(" [1 image]"));
    });
  });
}

test("ai + openai-chat: logprobs in providerMetadata", async () => {
  const prompt = promptFor("ai-openai-chat-logprobs");
  const result = await generateText({
    model: openai.chat("gpt-4o-mini"),
    prompt,
    providerOptions: { openai: { logprobs: 2 } },
    maxRetries: 0,
  });
  assert.equal(result.text, expectedReply(prompt));
  const logprobs = result.providerMetadata.openai.logprobs;
  assert.equal(logprobs.map((e) => e.token).join(""), result.text);
  assert.ok(logprobs.every((e) => e.logprob <= 0 && e.top_logprobs.length === 2));
  assert.ok(logprobs.every((e) => e.top_logprobs[0].token === e.token));
});
