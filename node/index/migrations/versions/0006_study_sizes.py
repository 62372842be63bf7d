"""Each study carries the bytes and the number of its instances.

The node's stored bytes (metrics, the storage quota) were a sum over every instance: half a
second at a million instances. The index writer now keeps `size_bytes` and `instance_count`
of each study in the transaction that adds its instances; existing studies are counted here
once. A database made by create_all from the newer models has the columns already (all zero
on an empty index).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.index.migrate import bind_of

revision = "0006_study_sizes"
down_revision = "0005_patient_study_anchor"


def upgrade() -> None:
    bind = bind_of(op)
    columns = {str(c["name"]) for c in sa.inspect(bind).get_columns("studies")}
    if "size_bytes" not in columns:
        op.add_column("studies", sa.Column("size_bytes", sa.BigInteger(), nullable=False,
                                           server_default="0"))
    if "instance_count" not in columns:
        op.add_column("studies", sa.Column("instance_count", sa.Integer(), nullable=False,
                                           server_default="0"))
    bind.execute(sa.text(
        "UPDATE studies SET "
        "size_bytes = (SELECT coalesce(sum(i.size), 0) FROM instances i "
        "JOIN series s ON i.series_pk = s.id WHERE s.study_pk = studies.id), "
        "instance_count = (SELECT count(*) FROM instances i "
        "JOIN series s ON i.series_pk = s.id WHERE s.study_pk = studies.id)"))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("instance_count")
        batch.drop_column("size_bytes")
