"""Viewing contexts: tokens that name what to open, the sessions they become, and their audit."""

from node.viewing.issue import IssueRequest, TokenIssuer
from node.viewing.options import ViewingOptions
from node.viewing.retrievals import RetrievalRegistry
from node.viewing.revoke import purge, revoke_sessions, revoke_token
from node.viewing.sessions import Redemption, context_json, redeem, session_context

__all__ = [
    "IssueRequest",
    "Redemption",
    "RetrievalRegistry",
    "TokenIssuer",
    "ViewingOptions",
    "context_json",
    "purge",
    "redeem",
    "revoke_sessions",
    "revoke_token",
    "session_context",
]
