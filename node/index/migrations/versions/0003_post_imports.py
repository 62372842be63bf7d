"""POST imports as resumable jobs: each object's outcome, and the request's sealed credentials.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_post_imports"
down_revision = "0002_jobs"


def upgrade() -> None:
    op.create_table(
        "import_outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("context_pk", sa.Integer(), nullable=False),
        sa.Column("item", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["context_pk"], ["viewing_contexts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_import_outcomes_context_pk", "import_outcomes", ["context_pk"])
    op.create_table(
        "sealed_credentials",
        sa.Column("context_pk", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["context_pk"], ["viewing_contexts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("context_pk"),
    )
    op.create_index("ix_sealed_credentials_expires_at", "sealed_credentials", ["expires_at"])


def downgrade() -> None:
    op.drop_table("sealed_credentials")
    op.drop_table("import_outcomes")
