"""Prompt accounting beyond plain text: tool definitions, tool calls, images, audio, files.

The figures are OpenAI's published ones: the cookbook "How to count tokens with tiktoken"
(its tool example: 105 prompt tokens on gpt-3.5-turbo and gpt-4, 101 on gpt-4o and
gpt-4o-mini, as the API counted them) and the vision guide's image examples.
"""

from __future__ import annotations

import base64
import io
import struct
import wave
import zlib
from typing import Any

import pytest

from sluice.errors import ContextLengthExceeded
from sluice.models import ModelInfo, lookup
from sluice.tokens import (
    GPT4_TOOLS,
    GPT4O_TOOLS,
    IMAGE_HEADER_BYTES,
    count_audio,
    count_image,
    count_message,
    count_messages,
    count_prompt,
    count_text,
    count_tools,
    data_url_image_size,
    fit_to_context,
    image_tokens,
    tool_constants,
)

# the cookbook's example request
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature to return",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}
WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def _model(name: str) -> ModelInfo:
    return lookup(name, 8192)


# -- tool definitions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_tool_definitions_match_the_cookbooks_api_counts(model: str, expected: int) -> None:
    count = count_prompt(WEATHER_MESSAGES, _model(model), [WEATHER_TOOL])
    assert count.tokens == expected
    assert not count.estimated


def test_tool_definitions_are_counted_term_by_term() -> None:
    enc = "o200k_base"
    k = GPT4O_TOOLS
    props = WEATHER_TOOL["function"]["parameters"]["properties"]
    expected = (
        k.function
        + count_text("get_current_weather:Get the current weather in a given location", enc)
        + k.properties
        + k.property
        + count_text(f"location:string:{props['location']['description']}", enc)
        + k.property
        + k.enum
        + (k.enum_item + count_text("celsius", enc))
        + (k.enum_item + count_text("fahrenheit", enc))
        + count_text("unit:string:The unit of temperature to return", enc)
        + k.end
    )
    assert count_tools([WEATHER_TOOL], _model("gpt-4o")).tokens == expected
    # the list's end is counted once, each function's start once per function
    two = count_tools([WEATHER_TOOL, WEATHER_TOOL], _model("gpt-4o")).tokens
    assert two == 2 * expected - k.end


def test_a_final_period_of_a_description_is_not_counted() -> None:
    plain = {"type": "function", "function": {"name": "f", "description": "Does things"}}
    dotted = {"type": "function", "function": {"name": "f", "description": "Does things."}}
    model = _model("gpt-4o")
    assert count_tools([dotted], model) == count_tools([plain], model)


def test_no_tools_count_nothing() -> None:
    assert count_tools(None, _model("gpt-4o")).tokens == 0
    assert count_tools([], _model("gpt-4o")).tokens == 0


def test_tool_constants_per_family_and_estimated_elsewhere() -> None:
    assert tool_constants(_model("gpt-4o-2024-08-06")) == (GPT4O_TOOLS, False)
    assert tool_constants(_model("gpt-4o-mini-2024-07-18")) == (GPT4O_TOOLS, False)
    assert tool_constants(_model("gpt-4-0613")) == (GPT4_TOOLS, False)
    assert tool_constants(_model("gpt-3.5-turbo-0125")) == (GPT4_TOOLS, False)
    # not measured by the cookbook: the constants of the family sharing the encoding
    assert tool_constants(_model("gpt-4-turbo")) == (GPT4_TOOLS, True)
    assert tool_constants(_model("gpt-4.1")) == (GPT4O_TOOLS, True)
    assert tool_constants(_model("llama3.1:8b")) == (GPT4O_TOOLS, True)
    assert count_tools([WEATHER_TOOL], _model("gpt-4.1")).estimated


def test_schema_parts_the_formula_does_not_cover_count_as_json_and_are_estimated() -> None:
    nested = {
        "type": "function",
        "function": {
            "name": "book",
            "description": "Book rooms",
            "parameters": {
                "type": "object",
                "properties": {
                    "rooms": {
                        "type": "array",
                        "description": "The rooms",
                        "items": {"type": "object", "properties": {"beds": {"type": "integer"}}},
                    }
                },
                "required": ["rooms"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    flat = {
        "type": "function",
        "function": {
            "name": "book",
            "description": "Book rooms",
            "parameters": {
                "type": "object",
                "properties": {"rooms": {"type": "array", "description": "The rooms"}},
            },
        },
    }
    model = _model("gpt-4o")
    assert not count_tools([flat], model).estimated
    nested_count = count_tools([nested], model)
    assert nested_count.estimated
    assert nested_count.tokens > count_tools([flat], model).tokens


def test_custom_tools_are_counted_and_estimated() -> None:
    custom = {
        "type": "custom",
        "custom": {
            "name": "sql",
            "description": "Run a query",
            "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": "x"}},
        },
    }
    count = count_tools([custom], _model("gpt-4o"))
    assert count.estimated
    assert count.tokens > GPT4O_TOOLS.function + GPT4O_TOOLS.end + count_text(
        "sql:Run a query", "o200k_base"
    )


# -- tool calls and results -------------------------------------------------------------


def test_assistant_tool_calls_count_their_name_and_arguments() -> None:
    enc = "o200k_base"
    arguments = '{"location": "Paris, France", "unit": "celsius"}'
    call = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": arguments},
            },
            {"id": "call_2", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}},
        ],
    }
    expected = (
        3
        + count_text("assistant", enc)
        + count_text("get_current_weather", enc)
        + count_text(arguments, enc)
        + count_text("sql", enc)
        + count_text("SELECT 1", enc)
    )
    assert count_message(call, enc) == expected
    count = count_prompt([call], _model("gpt-4o"))
    assert count.tokens == expected + 3
    assert count.estimated  # the framing of a call is not documented


def test_tool_results_count_their_call_id_and_content() -> None:
    enc = "o200k_base"
    result = {"role": "tool", "tool_call_id": "call_abc123", "content": "22 degrees"}
    expected = (
        3 + count_text("tool", enc) + count_text("call_abc123", enc) + count_text("22 degrees", enc)
    )
    assert count_message(result, enc) == expected
    assert not count_prompt([result], _model("gpt-4o")).estimated


def test_text_and_refusal_parts_count_as_text() -> None:
    enc = "o200k_base"
    parts = {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello "}, {"type": "refusal", "refusal": "no"}],
    }
    assert count_message(parts, enc) == 3 + count_text("assistant", enc) + count_text(
        "Hello no", enc
    )


# -- trimming with the new counts ---------------------------------------------------------


def _words(role: str, words: int, tag: str) -> dict[str, Any]:
    return {"role": role, "content": (tag + " " + "word " * words).strip()}


def test_tool_definitions_shrink_the_budget_and_are_never_dropped() -> None:
    messages = [_words("system", 5, "sys"), _words("user", 150, "u1"), _words("user", 20, "u2")]
    # room for the messages and 30 tokens more: the tool definitions need 68
    window = count_messages(messages, "o200k_base") + 100 + 30
    model = ModelInfo("gpt-4o", window, "o200k_base")
    without = fit_to_context(messages, model, 100, 0)
    assert without.dropped == 0
    fitted = fit_to_context(messages, model, 100, 0, tools=[WEATHER_TOOL])
    assert [m["content"].split()[0] for m in fitted.messages] == ["sys", "u2"]
    tools = count_tools([WEATHER_TOOL], model).tokens
    assert fitted.prompt_tokens == count_messages(fitted.messages, "o200k_base") + tools
    assert fitted.prompt_tokens == count_messages(
        fitted.messages, "o200k_base", model="gpt-4o", tools=[WEATHER_TOOL]
    )
    assert fitted.prompt_tokens + 100 <= window
    assert not fitted.estimated


def test_tool_definitions_that_cannot_fit_are_rejected_as_tools() -> None:
    model = ModelInfo("gpt-4o", 100, "o200k_base")
    with pytest.raises(ContextLengthExceeded) as info:
        fit_to_context([_words("user", 1, "u")], model, 40, 0, tools=[WEATHER_TOOL])
    assert info.value.param == "tools"


def test_the_positional_signature_still_works() -> None:
    model = ModelInfo("m", 1000, "cl100k_base")
    fitted = fit_to_context([_words("user", 5, "u")], model, 100, 256)
    assert (fitted.dropped, fitted.estimated) == (0, False)


def test_a_turn_with_tool_calls_goes_with_its_results() -> None:
    """The calls' arguments now count: a big call makes its turn (and its results) go."""
    model = ModelInfo("gpt-4o", 300, "o200k_base")
    call = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "write", "arguments": '{"text": "' + "word " * 150 + '"}'},
            }
        ],
    }
    messages = [
        _words("developer", 5, "dev"),
        _words("user", 5, "u1"),
        call,
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        _words("user", 20, "u2"),
    ]
    fitted = fit_to_context(messages, model, 100, 0)
    assert [m["role"] for m in fitted.messages] == ["developer", "user"]
    assert fitted.messages[-1]["content"].startswith("u2")
    assert fitted.dropped == 3
    assert not fitted.estimated  # the estimated call was dropped: what is left is exact


# -- images -----------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    """A real PNG: signature, IHDR, one IDAT of black 8-bit grey rows, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _jpeg(width: int, height: int, padding: int = 0) -> bytes:
    """A JPEG's header as far as a reader of sizes goes: SOI, APP0 (JFIF), ``padding``
    bytes of comment segments, then the SOF0 frame header that carries the size."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    out = b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0
    while padding > 0:
        size = min(padding, 60_000)
        out += b"\xff\xfe" + struct.pack(">H", size + 2) + b"c" * size
        padding -= size
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return out + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _image(url: str, detail: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"url": url}
    if detail:
        spec["detail"] = detail
    return {"role": "user", "content": [{"type": "image_url", "image_url": spec}]}


@pytest.mark.parametrize(
    ("width", "height", "detail", "expected"),
    [
        (1024, 1024, "high", 765),  # 768×768: 4 tiles
        (2048, 4096, "high", 1105),  # 1024×2048, then 768×1536: 6 tiles
        (4096, 8192, "low", 85),
        (1024, 1024, "auto", 765),
        (512, 512, "high", 255),  # 1 tile; small images are not scaled up
        (100, 3000, "high", 85 + 170 * 4),  # 68×2048: 1×4 tiles
    ],
)
def test_image_tokens_match_openais_examples(
    width: int, height: int, detail: str, expected: int
) -> None:
    assert image_tokens(width, height, detail, "gpt-4o") == expected


def test_gpt_4o_mini_images_cost_its_documented_rates() -> None:
    assert image_tokens(1024, 1024, "low", "gpt-4o-mini") == 2833
    assert image_tokens(1024, 1024, "high", "gpt-4o-mini-2024-07-18") == 2833 + 4 * 5667


def test_the_size_of_a_png_data_url_is_read_from_its_header() -> None:
    url = _data_url("image/png", _png(1500, 600))
    assert data_url_image_size(url) == (1500, 600)
    # within 2048×2048 and its shortest side under 768: kept as it is, 3×2 tiles
    count = count_image({"url": url, "detail": "high"}, "gpt-4o")
    assert count.tokens == 85 + 170 * 6
    assert not count.estimated


def test_the_size_of_a_jpeg_data_url_is_read_from_its_header() -> None:
    url = _data_url("image/jpeg", _jpeg(2048, 4096))
    assert data_url_image_size(url) == (2048, 4096)
    count = count_prompt([_image(url, "high")], _model("gpt-4o"))
    assert count.tokens == 3 + 1 + 1105 + 3  # message, "user", the image, priming
    assert not count.estimated


def test_only_a_prefix_of_a_data_url_is_decoded() -> None:
    """What follows the first 64 KiB is not even valid base64: it is never decoded."""
    image = _png(64, 32) + b"\x00" * IMAGE_HEADER_BYTES  # (bytes after IEND: ignored)
    url = _data_url("image/png", image) + "!" * (4 * 1024 * 1024)
    assert data_url_image_size(url) == (64, 32)


def test_a_header_beyond_the_prefix_falls_back_to_the_estimate() -> None:
    url = _data_url("image/jpeg", _jpeg(64, 64, padding=IMAGE_HEADER_BYTES + 1000))
    assert data_url_image_size(url) is None
    count = count_image({"url": url, "detail": "high"}, "gpt-4o")
    assert (count.tokens, count.estimated) == (765, True)
    assert data_url_image_size(_data_url("image/jpeg", _jpeg(64, 64, padding=1000))) == (64, 64)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cat.png",
        "data:image/png;base64,not base64 at all%%%",
        "data:image/png;base64," + base64.b64encode(b"not an image").decode(),
        "data:image/png," + "x" * 100,  # not base64
        "data:image/svg+xml;base64," + base64.b64encode(b"<svg width='9'/>").decode(),
        # an SVG (or TIFF…) that says it is a PNG never reaches imagesize's other readers
        "data:image/png;base64,"
        + base64.b64encode(
            b"<svg width='9' height='9' xmlns='http://www.w3.org/2000/svg'/>"
        ).decode(),
        "data:image/png;base64",  # no comma
    ],
)
def test_an_image_of_unknown_size_is_estimated_as_1024_square(url: str) -> None:
    high = count_image({"url": url, "detail": "high"}, "gpt-4o")
    assert (high.tokens, high.estimated) == (765, True)
    auto = count_prompt([_image(url)], _model("gpt-4o"))
    assert auto.tokens == 3 + 1 + 765 + 3
    assert auto.estimated


def test_a_low_detail_image_costs_the_base_whatever_its_url() -> None:
    count = count_image({"url": "https://example.com/cat.png", "detail": "low"}, "gpt-4o")
    assert (count.tokens, count.estimated) == (85, False)


def test_models_outside_the_tile_table_are_estimated() -> None:
    url = _data_url("image/png", _png(16, 16))
    assert not count_image({"url": url}, "gpt-4.1-2025-04-14").estimated
    assert count_image({"url": url}, "gpt-4.1-mini").estimated  # billed by patches
    assert count_image({"url": url}, "llama3.2-vision").estimated


def test_an_old_big_image_makes_its_message_droppable() -> None:
    big = _data_url("image/png", _png(2048, 2048))  # 4 tiles at 768×768: 765 tokens
    messages = [
        _words("system", 5, "sys"),
        {
            "role": "user",
            "content": [{"type": "text", "text": "u1 look"}, _image(big)["content"][0]],
        },
        _words("assistant", 10, "a1"),
        _words("user", 10, "u2"),
    ]
    model = ModelInfo("gpt-4o", 700, "o200k_base")
    fitted = fit_to_context(messages, model, 100, 0)
    assert [m["role"] for m in fitted.messages] == ["system", "assistant", "user"]
    assert fitted.prompt_tokens == count_messages(fitted.messages, "o200k_base", model="gpt-4o")
    assert fitted.prompt_tokens + 100 <= 700
    roomy = fit_to_context(messages, ModelInfo("gpt-4o", 2000, "o200k_base"), 100, 0)
    assert roomy.dropped == 0
    assert roomy.prompt_tokens > 765


def test_the_estimate_flag_reaches_the_fitted_prompt() -> None:
    model = ModelInfo("gpt-4o", 10_000, "o200k_base")
    url = _image("https://example.com/cat.png")
    fitted = fit_to_context([url, _words("user", 3, "u")], model, 100, 0)
    assert fitted.estimated
    exact = _image(_data_url("image/png", _png(8, 8)))
    assert not fit_to_context([exact, _words("user", 3, "u")], model, 100, 0).estimated


# -- audio and files (estimates) ----------------------------------------------------------


def _wav(seconds: float, rate: int = 16_000, channels: int = 1) -> str:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x00" * channels * int(rate * seconds))
    return base64.b64encode(out.getvalue()).decode()


def test_audio_is_estimated_at_ten_tokens_a_second() -> None:
    two_seconds = count_audio({"data": _wav(2.0), "format": "wav"})
    assert (two_seconds.tokens, two_seconds.estimated) == (21, True)  # (the 44-byte header)
    # the byte rate is the header's: 2 s of 44.1 kHz stereo is still about 20 tokens
    stereo = count_audio({"data": _wav(2.0, rate=44_100, channels=2), "format": "wav"})
    assert stereo.tokens == 21
    # mp3: no header read, 128 kbit/s assumed
    mp3 = base64.b64encode(b"\xff\xfb" * 16_000).decode()  # 32 000 bytes: 2 s
    assert count_audio({"data": mp3, "format": "mp3"}).tokens == 20
    assert count_audio({"data": "", "format": "wav"}) == count_audio({})


def test_audio_and_file_parts_mark_the_prompt_estimated() -> None:
    model = _model("gpt-4o-audio-preview")
    audio = {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": _wav(1.0), "format": "wav"}}],
    }
    count = count_prompt([audio], model)
    assert count.estimated
    assert count.tokens == 3 + 1 + 11 + 3
    file = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Summarise"},
            {"type": "file", "file": {"file_id": "file-abc", "filename": "a.pdf"}},
        ],
    }
    count = count_prompt([file], model)
    enc = "o200k_base"
    assert count.tokens == 3 + count_text("user", enc) + count_text("Summarise", enc) + 3
    assert count.estimated


def test_gif_and_webp_headers_are_read() -> None:
    gif = b"GIF89a" + struct.pack("<HH", 300, 200) + b"\x00\x00\x00" + b"\x3b"
    assert data_url_image_size(_data_url("image/gif", gif)) == (300, 200)
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (299).to_bytes(3, "little")
    vp8x += (199).to_bytes(3, "little")
    webp = b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x
    assert data_url_image_size(_data_url("image/webp", webp)) == (300, 200)
