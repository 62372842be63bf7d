"""Deleting studies and protecting them: `deletion_files` (files of deleted studies still to be
removed, by deletion job) and `protected_studies`. Tables a database made by create_all from
the newer models has already are left as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.index.migrate import bind_of, missing

revision = "0007_retention"
down_revision = "0006_study_sizes"


def upgrade() -> None:
    absent = missing(bind_of(op), "deletion_files", "protected_studies")
    if "deletion_files" in absent:
        op.create_table(
            "deletion_files",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("job_key", sa.String(length=128), nullable=False),
            sa.Column("sop_uid", sa.String(length=64), nullable=False),
            sa.Column("path", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_deletion_files_job_key", "deletion_files", ["job_key"])
    if "protected_studies" in absent:
        op.create_table(
            "protected_studies",
            sa.Column("study_uid", sa.String(length=64), nullable=False),
            sa.Column("protected_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("protected_by", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("study_uid"),
        )


def downgrade() -> None:
    op.drop_table("protected_studies")
    op.drop_index("ix_deletion_files_job_key", table_name="deletion_files")
    op.drop_table("deletion_files")
