"""What an image's first bytes say it is, for the image types OpenAI accepts (PNG, JPEG,
GIF, WebP): the CLI labels the data URLs it sends with it, the token counter reads only
those types' headers. A file's name or a data URL's label is not trusted for either."""

from __future__ import annotations

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(header: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, GIF or WebP by its signature, else None."""
    for signature, mime in _SIGNATURES:
        if header.startswith(signature):
            return mime
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "image/webp"
    return None
