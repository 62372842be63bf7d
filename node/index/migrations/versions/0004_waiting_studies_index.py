"""Context studies are indexed by study UID only while they wait for a retrieval.

The index on (study_uid, state) over every row put one random index page into every token's
commit, though only the retrievals' update (node/viewing/retrievals.py) looks rows up by UID,
and only rows still pending or retrieving. Most tokens name studies the node already holds.
A database made by create_all from the newer models has the new index already: each step is
done only where needed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.index.migrate import bind_of

revision = "0004_waiting_studies_index"
down_revision = "0003_post_imports"

WAITING = "state IN ('pending', 'retrieving')"


def _indexes() -> set[str]:
    return {str(index["name"]) for index in sa.inspect(bind_of(op)).get_indexes("context_studies")}


def upgrade() -> None:
    present = _indexes()
    if "ix_context_studies_uid_state" in present:
        op.drop_index("ix_context_studies_uid_state", table_name="context_studies")
    if "ix_context_studies_waiting" not in present:
        op.create_index("ix_context_studies_waiting", "context_studies", ["study_uid"],
                        sqlite_where=sa.text(WAITING), postgresql_where=sa.text(WAITING))


def downgrade() -> None:
    op.drop_index("ix_context_studies_waiting", table_name="context_studies")
    op.create_index("ix_context_studies_uid_state", "context_studies", ["study_uid", "state"])
