"""Studies remember when they were last used (opened by a token, retrieved from the node,
exported): the storage quota recycles the least recently used first. Nullable: never used
since this revision means "as old as its last store" (updated_at).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.index.migrate import bind_of

revision = "0008_study_used_at"
down_revision = "0007_retention"


def upgrade() -> None:
    columns = {str(c["name"]) for c in sa.inspect(bind_of(op)).get_columns("studies")}
    if "used_at" not in columns:
        op.add_column("studies", sa.Column("used_at", sa.DateTime(timezone=True),
                                           nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("used_at")
