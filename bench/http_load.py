"""A closed-loop HTTP load generator: N connections, each sending its next request as soon as the
previous answer is read, for a fixed time. Run in a process of its own so that its CPU time is
not the server's.

    .venv/bin/python -m bench.http_load --base http://127.0.0.1:8181 --paths paths.txt \
        --seconds 20 --connections 32 --header "Authorization: KEY"

Prints one JSON object: requests, errors (non-200 answers and failed connections, by status),
seconds, requests/s and latency percentiles in milliseconds. Requests answered during the
warm-up are not counted, except in `answered` (every 200, warm-up included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp


async def _worker(
    session: aiohttp.ClientSession, base: str, paths: list[str], offset: int, step: int,
    counted_from: float, until: float, latencies: list[float], errors: Counter[str],
    answered: list[int],
) -> None:
    index = offset
    while True:
        path = paths[index % len(paths)]
        index += step
        start = time.perf_counter()
        if start >= until:
            return
        try:
            async with session.get(base + path) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError as exc:
            status = -1
            errors[type(exc).__name__] += 1
        end = time.perf_counter()
        if status == 200:
            answered[0] += 1
        if start < counted_from:
            continue
        if status == 200:
            latencies.append(end - start)
        elif status != -1:
            errors[str(status)] += 1


async def run(base: str, paths: list[str], seconds: float, warmup: float, connections: int,
              headers: dict[str, str]) -> dict[str, Any]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    answered = [0]
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     skip_auto_headers=("User-Agent",)) as session:
        begin = time.perf_counter()
        counted_from = begin + warmup
        until = counted_from + seconds
        await asyncio.gather(*(
            _worker(session, base, paths, i, connections, counted_from, until, latencies, errors,
                    answered)
            for i in range(connections)))
    elapsed = time.perf_counter() - counted_from
    ordered = sorted(latencies)

    def pct(fraction: float) -> float:
        if not ordered:
            return float("nan")
        return 1000 * ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    return {"requests": len(ordered), "answered": answered[0], "errors": dict(errors),
            "seconds": elapsed,
            "rps": len(ordered) / elapsed, "p50_ms": pct(0.50), "p90_ms": pct(0.90),
            "p99_ms": pct(0.99), "max_ms": pct(1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="http://host:port")
    parser.add_argument("--paths", type=Path, required=True,
                        help="a file of request paths (with query), one a line, used in turn")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args()
    paths = [line for line in args.paths.read_text().splitlines() if line]
    if not paths:
        parser.error("--paths: the file holds no paths")
    headers = dict(h.split(": ", 1) for h in args.header)
    result = asyncio.run(run(args.base, paths, args.seconds, args.warmup, args.connections,
                             headers))
    json.dump(result, sys.stdout)
    print(flush=True)


if __name__ == "__main__":
    main()
