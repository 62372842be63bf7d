"""Protecting studies from recycling: stored now or not yet, by Study Instance UID."""

from __future__ import annotations

from node.index.protection_queries import set_protected
from node.services import NodeServices


async def protect(services: NodeServices, study_uid: str, who: str) -> bool:
    """True when the study was not protected before."""
    return await set_protected(services.engine, study_uid, True, who)


async def unprotect(services: NodeServices, study_uid: str, who: str) -> bool:
    """True when the study was protected before."""
    return await set_protected(services.engine, study_uid, False, who)
