"""Where the POST API's instances come from: folders, local files, S3/Wasabi and Google
buckets, WADO-RS and WADO-URI endpoints. One module per kind behind `Source`; all of them feed
the one ingest path through `Importer`."""

from node.sources.base import Source, SourceError, SourceObject, TransientSourceError
from node.sources.pipeline import FetchPolicy, Importer, SlideRegistry
from node.sources.plan import ImportPlan, plan_import
from node.sources.progress import ImportProgress
from node.sources.request import OpenRequest, parse_body, parse_request

__all__ = [
    "FetchPolicy",
    "ImportPlan",
    "ImportProgress",
    "Importer",
    "OpenRequest",
    "SlideRegistry",
    "Source",
    "SourceError",
    "SourceObject",
    "TransientSourceError",
    "parse_body",
    "parse_request",
    "plan_import",
]
