"""The metric objects, built once per process on first use (node/metrics/record.py).

prometheus-client decides when it is first imported whether values live in memory or in files
of PROMETHEUS_MULTIPROC_DIR, one per process, which the scraping worker sums
(node/metrics/exposition.py). So this module, the only one importing it, is imported only after
`serve` has set that folder (or never set it: the CLI and in-process tests count in memory).
Label values are the node's own words (doors, services, route templates, statuses), never
anything a request or a data set carries.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds: a C-FIND answers in milliseconds, a C-MOVE of a large study takes minutes.
DIMSE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                 300.0, 900.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0)


class Instruments:
    """Every counter, gauge and histogram the node updates. `registry`: where they are
    collected from in memory; None in multiprocess mode (collected from the files)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.received = Counter(
            "viewnode_instances_received", "Instances the ingest path finished, by door "
            "(c-store, retrieve, import, post, stow, repair, other) and outcome.",
            ["door", "outcome"], registry=registry)
        self.ingest_failed = Counter(
            "viewnode_instances_failed", "Instances the ingest path refused or failed to "
            "store, by door.", ["door"], registry=registry)
        self.store_failures = Counter(
            "viewnode_store_failures", "C-STORE requests answered with a failure status, by "
            "status (hex).", ["status"], registry=registry)
        self.associations = Gauge(
            "viewnode_associations_open", "DICOM associations open on this node's SCP.",
            registry=registry, multiprocess_mode="livesum")
        self.dimse = Histogram(
            "viewnode_dimse_request_duration_seconds", "C-FIND, C-MOVE and C-GET requests "
            "served, from the request to the last response.", ["service"],
            buckets=DIMSE_BUCKETS, registry=registry)
        self.tokens_issued = Counter(
            "viewnode_tokens_issued", "Tokens issued, by API (get: /ngv/obscurl and the "
            "multimonitor API; post: POST /ngv/v1/obscurl).", ["api"], registry=registry)
        self.tokens_redeemed = Counter(
            "viewnode_tokens_redeemed", "Tokens redeemed for a viewer session.",
            registry=registry)
        self.tokens_refused = Counter(
            "viewnode_tokens_refused", "Token redemptions refused, by reason (unknown, used, "
            "expired, revoked).", ["reason"], registry=registry)
        self.http = Histogram(
            "viewnode_http_request_duration_seconds", "HTTP requests, by method, route "
            "template and status.", ["method", "route", "status"], buckets=HTTP_BUCKETS,
            registry=registry)
        self.deleted = Counter(
            "viewnode_studies_deleted", "Studies deleted, by why (request, recycle).",
            ["reason"], registry=registry)
        self.deleted_bytes = Counter(
            "viewnode_deleted_bytes", "Bytes of the studies deleted, by why.", ["reason"],
            registry=registry)
