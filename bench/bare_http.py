"""The yardstick for HTTP benchmarks: aiohttp answering every GET with a constant, nothing else.

    .venv/bin/python -m bench.bare_http --port 8182

It answers on every path, so the load generator can send it the very requests the node gets
(same lengths, same headers) and the difference between the two is the node's own work.
"""

from __future__ import annotations

import argparse

from aiohttp import web

BODY = "0" * 64


async def constant(_request: web.Request) -> web.Response:
    return web.Response(text=BODY, content_type="text/plain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/{tail:.*}", constant)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
