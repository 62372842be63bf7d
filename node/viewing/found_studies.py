"""A study a searching viewer session found, joining that session's context.

A session whose role may search (and whose token did not hide it) may open any study it finds:
one in the index, or one a source node holds. Opening it adds it to the session's context
(purpose "search"), so that the context's grant, its waiting page and its audit see it like any
study of the token; a study the index does not hold is retrieved in the background by the
same retrieval jobs that tokens use (node/viewing/retrievals.py), once however many sessions
ask. The search purpose keeps it out of the windows the token itself opens (context_patients).
"""

from __future__ import annotations

from collections.abc import Sequence

from node.config import Config, RemoteNode
from node.dimse import scu
from node.index.context_queries import add_context_study
from node.index.study_lookup import StudyLookup
from node.services import NodeServices
from node.viewing.retrievals import RetrievalRegistry

PURPOSE = "search"


async def local_studies(services: NodeServices, uids: Sequence[str]) -> dict[str, str]:
    """The studies among `uids` that the index holds, each with the source node its last
    retrieval failed from ("" when none did: as far as the node knows, it holds it whole)."""
    if not uids:
        return {}
    async with services.sessions() as session:
        return {match[0]: match[6] for match in await StudyLookup(session).by_uids(uids)}


async def locate_on_sources(config: Config, study_uids: Sequence[str], timeout: float
                            ) -> dict[str, RemoteNode]:
    """Each of the studies a source node holds, with the first such node in configuration
    order; asked by one C-FIND per node (the UIDs as a list), all at once within `timeout`."""
    if not config.source_nodes or not study_uids:
        return {}
    result = await scu.find(config, config.source_nodes, "STUDY",
                            {"StudyInstanceUID": "\\".join(study_uids)}, timeout=timeout)
    wanted = set(study_uids)
    holders: dict[str, set[str]] = {}
    for ae_title, ds in result.matches:
        uid = str(ds.get("StudyInstanceUID", ""))
        if uid in wanted:
            holders.setdefault(uid, set()).add(ae_title)
    return {uid: next(r for r in config.source_nodes if r.ae_title in titles)
            for uid, titles in holders.items()}


async def add_found_study(services: NodeServices, retrievals: RetrievalRegistry,
                          context_pk: int, position: int, study_uid: str,
                          source: RemoteNode | None) -> None:
    """Add the study to the context at `position`: available when the index holds it
    (`source` None), else pending and retrieved from `source` in the background (after the
    context row is committed, so that the retrieval's final state reaches it)."""
    async with services.sessions() as session:
        await add_context_study(session, context_pk, position, study_uid, purpose=PURPOSE,
                                state="pending" if source else "available",
                                source=source.ae_title if source else "")
    if source is not None:
        await retrievals.ensure(source, study_uid)
