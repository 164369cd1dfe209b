// What the client tests share: the gateway's /v1, prompts unique to the run, and what the
// fake upstream says (its replies are deterministic: devtools/fake_upstream/replies.py).
// tests/integration/test_clients_node.py runs these with SLUICE_GATEWAY, SLUICE_RUN and
// SLUICE_EXPECT (the reply templates, from expected_reply) set.
import assert from "node:assert/strict";

export const BASE_URL = `${process.env.SLUICE_GATEWAY ?? "http://127.0.0.1:8000"}/v1`;
const RUN = process.env.SLUICE_RUN ?? "local";
const EXPECT = JSON.parse(process.env.SLUICE_EXPECT ?? "{}");

/** A prompt unique to one test of this run; the pytest side finds its request by it. */
export const promptFor = (name) => `node ${name} ${RUN}`;

/** The text the fake answers to `prompt` (`image`: a message with one image part). */
export function expectedReply(prompt, { image = false } = {}) {
  const template = image ? EXPECT.image_reply : EXPECT.reply;
  assert.ok(template, "SLUICE_EXPECT has no reply templates");
  return template.replace("{prompt}", prompt);
}

/** The text the fake answers when the conversation ends with this tool result. */
export function expectedToolReply(result) {
  assert.ok(EXPECT.tool_reply, "SLUICE_EXPECT has no tool_reply template");
  return EXPECT.tool_reply.replace("{result}", result);
}

export const TOOL_RESULT = '{"temperature_c": 21, "sky": "clear"}';
// the arguments the fake builds from these schemas, and the Forecast document it builds
// for a json_schema response_format (schema_value: "Paris" for a city, else "<name>-value")
export const WEATHER_ARGS = { city: "Paris" };
export const TIME_ARGS = { zone: "zone-value" };
export const FORECAST = { city: "Paris", temperature_c: 1.5, conditions: "sunny" };

// a 1x1 PNG
export const PNG_BASE64 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
export const PNG_DATA_URL = `data:image/png;base64,${PNG_BASE64}`;

export const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city.",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
      additionalProperties: false,
    },
  },
};
export const TIME = {
  type: "function",
  function: {
    name: "get_time",
    description: "The time in a time zone.",
    parameters: {
      type: "object",
      properties: { zone: { type: "string" } },
      required: ["zone"],
      additionalProperties: false,
    },
  },
};
