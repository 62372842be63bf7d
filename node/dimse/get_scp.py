"""C-GET SCP (placeholder until the query engine lands)."""

from typing import Any

from node.services import NodeServices


def handlers(services: NodeServices) -> list[tuple[Any, ...]]:
    return []
