"""JSON from outside, parsed with a bound on nesting.

Python's parser recurses once per nesting level: a body of 100,000 `[` raises RecursionError,
which is no ValueError and would reach a client as a 500. The node's own JSON is a few levels
deep (an opening request: body, studies, series, instances, storage); anything deeper than
MAX_DEPTH is refused as the client's error, before any code walks it.
"""

from __future__ import annotations

import json
from typing import Any

from node.errors import InvalidInput

MAX_DEPTH = 32


def parse_json(text: bytes | str, field: str) -> Any:
    """The parsed value; InvalidInput naming `field` for malformed or too deeply nested JSON."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInput(f"{field}: JSON nested more than {MAX_DEPTH} levels deep",
                           field=field) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{field}: not valid JSON ({exc})", field=field) from exc
    if nesting(value) > MAX_DEPTH:
        raise InvalidInput(f"{field}: JSON nested more than {MAX_DEPTH} levels deep",
                           field=field)
    return value


def nesting(value: Any) -> int:
    """How deeply lists and objects nest in `value` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        stack.extend((child, depth) for child in children)
    return deepest
