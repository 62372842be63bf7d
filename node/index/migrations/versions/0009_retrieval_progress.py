"""Context studies keep their retrieval's progress: instances received so far and how many the
source announced, so that the waiting page shows it whichever instance runs the retrieval and
a partial retrieval says how far it got. Rows written before have no progress (0, unknown).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.index.migrate import bind_of

revision = "0009_retrieval_progress"
down_revision = "0008_study_used_at"

COLUMNS = ("instances_received", "instances_announced")


def upgrade() -> None:
    present = {str(c["name"]) for c in sa.inspect(bind_of(op)).get_columns("context_studies")}
    for name in COLUMNS:
        if name not in present:
            op.add_column("context_studies", sa.Column(name, sa.Integer(), nullable=False,
                                                       server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("context_studies") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
