"""The node's Prometheus metrics: counted where things happen, summed over the worker processes,
rendered by GET /metrics (rest/metrics.py)."""

from node.metrics.exposition import enable_multiprocess, render, worker_gone
from node.metrics.record import (
    association_count,
    dimse_timed,
    http_request,
    instance_failed,
    instance_received,
    store_failure,
    studies_deleted,
    token_redeemed,
    token_refused,
    tokens_issued,
)

__all__ = [
    "association_count",
    "dimse_timed",
    "enable_multiprocess",
    "http_request",
    "instance_failed",
    "instance_received",
    "render",
    "store_failure",
    "studies_deleted",
    "token_redeemed",
    "token_refused",
    "tokens_issued",
    "worker_gone",
]
