"""The pathology tables: non-DICOM slide files, slide metadata, colour lookup tables,
annotation layers and the annotation instances already read. Only missing tables are created,
so that databases made by create_all are taken over as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.index.migrate import bind_of, missing

revision = "p0001_pathology"
down_revision = None


def upgrade() -> None:
    absent = missing(
        bind_of(op),
        "pathology_annotation_imports",
        "pathology_annotation_layers",
        "pathology_slide_files",
        "pathology_slide_luts",
        "pathology_slide_metadata",
    )
    if "pathology_annotation_imports" in absent:
        op.create_table(
            "pathology_annotation_imports",
            sa.Column("sop_uid", sa.String(length=64), nullable=False),
            sa.Column("container_identifier", sa.String(length=64), nullable=False),
            sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("sop_uid"),
        )
        op.create_index(
            "ix_pathology_annotation_imports_container_identifier",
            "pathology_annotation_imports",
            ["container_identifier"],
        )
    if "pathology_annotation_layers" in absent:
        op.create_table(
            "pathology_annotation_layers",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("container_identifier", sa.String(length=64), nullable=False),
            sa.Column("owner", sa.String(length=64), nullable=False),
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("shapes", sa.JSON(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint(
                "container_identifier", "owner", "name", name="uq_layer_owner_name"
            ),
        )
        op.create_index(
            "ix_pathology_annotation_layers_container_identifier",
            "pathology_annotation_layers",
            ["container_identifier"],
        )
    if "pathology_slide_files" in absent:
        op.create_table(
            "pathology_slide_files",
            sa.Column("container_identifier", sa.String(length=64), nullable=False),
            sa.Column("path", sa.Text(), nullable=False),
            sa.Column("format", sa.String(length=32), nullable=False),
            sa.Column("study_uid", sa.String(length=64), nullable=False),
            sa.Column("series_uid", sa.String(length=64), nullable=False),
            sa.Column("sop_uid", sa.String(length=64), nullable=False),
            sa.Column("accession_number", sa.String(length=64), nullable=False),
            sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("container_identifier"),
        )
        op.create_index(
            "ix_pathology_slide_files_accession_number",
            "pathology_slide_files",
            ["accession_number"],
        )
    if "pathology_slide_luts" in absent:
        op.create_table(
            "pathology_slide_luts",
            sa.Column("container_identifier", sa.String(length=64), nullable=False),
            sa.Column("title", sa.String(length=256), nullable=False),
            sa.Column("size", sa.Integer(), nullable=False),
            sa.Column("digest", sa.String(length=64), nullable=False),
            sa.Column("cube", sa.LargeBinary(), nullable=False),
            sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("container_identifier"),
        )
    if "pathology_slide_metadata" in absent:
        op.create_table(
            "pathology_slide_metadata",
            sa.Column("container_identifier", sa.String(length=64), nullable=False),
            sa.Column("source", sa.String(length=8), nullable=False),
            sa.Column("specimen_identifier", sa.String(length=256), nullable=False),
            sa.Column("specimen_alias", sa.String(length=256), nullable=False),
            sa.Column("specimen_procedure", sa.String(length=256), nullable=False),
            sa.Column("specimen_body_site", sa.String(length=256), nullable=False),
            sa.Column("block_identifier", sa.String(length=256), nullable=False),
            sa.Column("block_alias", sa.String(length=256), nullable=False),
            sa.Column("block_procedure", sa.String(length=256), nullable=False),
            sa.Column("slide_identifier", sa.String(length=256), nullable=False),
            sa.Column("slide_alias", sa.String(length=256), nullable=False),
            sa.Column("slide_stain_code", sa.String(length=256), nullable=False),
            sa.Column("origin", sa.String(length=256), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("container_identifier", "source"),
        )
        op.create_index(
            "ix_pathology_slide_metadata_block_identifier",
            "pathology_slide_metadata",
            ["block_identifier"],
        )
        op.create_index(
            "ix_pathology_slide_metadata_slide_identifier",
            "pathology_slide_metadata",
            ["slide_identifier"],
        )
        op.create_index(
            "ix_pathology_slide_metadata_specimen_identifier",
            "pathology_slide_metadata",
            ["specimen_identifier"],
        )


def downgrade() -> None:
    op.drop_table("pathology_slide_metadata")
    op.drop_table("pathology_slide_luts")
    op.drop_table("pathology_slide_files")
    op.drop_table("pathology_annotation_layers")
    op.drop_table("pathology_annotation_imports")
