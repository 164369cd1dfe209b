"""The chat page (``GET /``) and its security headers.

Model output is untrusted text. The page sanitises it (DOMPurify), and this
Content-Security-Policy is the second wall: no inline or foreign script runs, and no
image or request goes to another origin (so injected Markdown cannot leak the chat
through an image URL).
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

bp = Blueprint("page", __name__)

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


@bp.get("/")
def chat_page() -> Response:
    response = Response(render_template("index.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
