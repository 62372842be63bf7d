"""The page a browser gets instead of a viewer: a used, expired, revoked or unknown link, or no
session. Dark like the viewers it stands in for, it says what happened and what to do, and
names no patient (it is shown before, or without, any grant)."""

from __future__ import annotations

import html

from aiohttp import web

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
}
_STYLE = (
    "html{color-scheme:dark}body{margin:0;min-height:100vh;display:flex;align-items:center;"
    "justify-content:center;background:#090c10;color:#d8dee9;"
    "font:16px/1.5 system-ui,sans-serif}main{max-width:34em;padding:2em;border-left:4px solid "
    "#5e81ac;background:#11161d}h1{margin:0 0 .5em;font-size:1.4em;color:#eceff4}"
    "p{margin:.5em 0}.what-to-do{color:#a3b1c6}a{color:#88c0d0}"
    "button{font:inherit;color:#eceff4;background:#5e81ac;border:0;border-radius:3px;"
    "padding:.2em 1.2em;cursor:pointer}")

# A viewer's page (OHIF's, the slide viewer's) asked for without a live session.
NO_SESSION = ("No viewer session",
              "This page needs a viewer session, and there is none (or it has ended).",
              "Open the study again from the calling application.")


def refusal_page(status: int, title: str, message: str, what_to_do: str,
                 script: str | None = None) -> web.Response:
    """The page; `script`, the URL of a script of the node's own that the page runs (a page
    that waits for something and then goes on), allowed by its Content-Security-Policy."""
    loaded = f"<script src=\"{html.escape(script)}\" defer></script>" if script else ""
    text = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>{loaded}</head>\n"
        f"<body class=\"refused\"><main role=\"alert\"><h1>{html.escape(title)}</h1>\n"
        f"<p class=\"what-happened\">{html.escape(message)}</p>\n"
        f"<p class=\"what-to-do\">{html.escape(what_to_do)}</p></main></body></html>\n")
    headers = HEADERS if script is None else {**HEADERS, "Content-Security-Policy": (
        HEADERS["Content-Security-Policy"] + "; script-src 'self'; connect-src 'self'")}
    return web.Response(status=status, text=text, content_type="text/html", headers=headers)
