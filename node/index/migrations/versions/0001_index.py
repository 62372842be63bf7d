"""The index as it was before migrations: patients, studies, series, instances, settings,
the viewer's records (roles, hanging protocols, viewing contexts, sessions, audit) and the
storage mappings. Only missing tables are created, so that databases made by create_all are
taken over as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.index.migrate import bind_of, missing

revision = "0001_index"
down_revision = None


def upgrade() -> None:
    absent = missing(
        bind_of(op),
        "audit_events",
        "hanging_protocols",
        "ngv_storage_mappings",
        "patients",
        "roles",
        "settings",
        "viewing_contexts",
        "context_studies",
        "studies",
        "viewer_sessions",
        "series",
        "instances",
    )
    if "audit_events" in absent:
        op.create_table(
            "audit_events",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("action", sa.String(length=16), nullable=False),
            sa.Column("username", sa.String(length=64), nullable=False),
            sa.Column("role", sa.String(length=64), nullable=False),
            sa.Column("context_pk", sa.Integer(), nullable=True),
            sa.Column("client_address", sa.String(length=64), nullable=False),
            sa.Column("detail", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_audit_events_at", "audit_events", ["at"])
    if "hanging_protocols" in absent:
        op.create_table(
            "hanging_protocols",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("scope", sa.String(length=8), nullable=False),
            sa.Column("owner", sa.String(length=64), nullable=False),
            sa.Column("rows", sa.Integer(), nullable=False),
            sa.Column("columns", sa.Integer(), nullable=False),
            sa.Column("rules", sa.JSON(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("scope", "owner", "name", name="uq_protocol_scope_name"),
        )
    if "ngv_storage_mappings" in absent:
        op.create_table(
            "ngv_storage_mappings",
            sa.Column("host_path", sa.String(length=1024), nullable=False),
            sa.Column("container_path", sa.String(length=1024), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("host_path"),
        )
    if "patients" in absent:
        op.create_table(
            "patients",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("patient_id", sa.String(length=64), nullable=False),
            sa.Column("issuer", sa.String(length=64), nullable=False),
            sa.Column("name", sa.String(length=324), nullable=False),
            sa.Column("name_search", sa.String(length=324), nullable=False),
            sa.Column("birth_date", sa.String(length=8), nullable=False),
            sa.Column("sex", sa.String(length=16), nullable=False),
            sa.Column("charset", sa.String(length=128), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("patient_id", "issuer", name="uq_patient_id_issuer"),
        )
        op.create_index("ix_patients_name_search", "patients", ["name_search"])
        op.create_index("ix_patients_patient_id", "patients", ["patient_id"])
    if "roles" in absent:
        op.create_table(
            "roles",
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("permissions", sa.JSON(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if "settings" in absent:
        op.create_table(
            "settings",
            sa.Column("key", sa.String(length=64), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
    if "viewing_contexts" in absent:
        op.create_table(
            "viewing_contexts",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("username", sa.String(length=64), nullable=False),
            sa.Column("role", sa.String(length=64), nullable=False),
            sa.Column("display", sa.String(length=8), nullable=False),
            sa.Column("request", sa.JSON(), nullable=False),
            sa.Column("options", sa.JSON(), nullable=False),
            sa.Column("sources", sa.JSON(), nullable=False),
            sa.Column("hanging_protocols", sa.JSON(), nullable=False),
            sa.Column("sticky", sa.String(length=64), nullable=False),
            sa.Column("client_address", sa.String(length=64), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("token_hash"),
        )
    if "context_studies" in absent:
        op.create_table(
            "context_studies",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("context_pk", sa.Integer(), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
            sa.Column("study_uid", sa.String(length=64), nullable=False),
            sa.Column("purpose", sa.String(length=8), nullable=False),
            sa.Column("preload", sa.Boolean(), nullable=False),
            sa.Column("state", sa.String(length=12), nullable=False),
            sa.Column("source", sa.String(length=16), nullable=False),
            sa.Column("patient_id", sa.String(length=64), nullable=False),
            sa.Column("accession_number", sa.String(length=64), nullable=False),
            sa.Column("study_date", sa.String(length=8), nullable=False),
            sa.Column("description", sa.String(length=64), nullable=False),
            sa.Column("message", sa.Text(), nullable=False),
            sa.ForeignKeyConstraint(["context_pk"], ["viewing_contexts.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_context_studies_context_pk", "context_studies", ["context_pk"])
        op.create_index("ix_context_studies_uid_state", "context_studies", ["study_uid", "state"])
    if "studies" in absent:
        op.create_table(
            "studies",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("patient_pk", sa.Integer(), nullable=False),
            sa.Column("study_uid", sa.String(length=64), nullable=False),
            sa.Column("study_date", sa.String(length=8), nullable=False),
            sa.Column("study_time", sa.String(length=16), nullable=False),
            sa.Column("accession_number", sa.String(length=64), nullable=False),
            sa.Column("study_id", sa.String(length=16), nullable=False),
            sa.Column("description", sa.String(length=64), nullable=False),
            sa.Column("referring_physician", sa.String(length=324), nullable=False),
            sa.Column("charset", sa.String(length=128), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(
                ["patient_pk"],
                ["patients.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("study_uid"),
        )
        op.create_index("ix_studies_accession_number", "studies", ["accession_number"])
        op.create_index("ix_studies_patient_pk", "studies", ["patient_pk"])
        op.create_index("ix_studies_study_date", "studies", ["study_date"])
    if "viewer_sessions" in absent:
        op.create_table(
            "viewer_sessions",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("cookie_hash", sa.String(length=64), nullable=False),
            sa.Column("context_pk", sa.Integer(), nullable=False),
            sa.Column("username", sa.String(length=64), nullable=False),
            sa.Column("client_address", sa.String(length=64), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
            sa.ForeignKeyConstraint(["context_pk"], ["viewing_contexts.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("cookie_hash"),
        )
        op.create_index("ix_viewer_sessions_context_pk", "viewer_sessions", ["context_pk"])
        op.create_index("ix_viewer_sessions_username", "viewer_sessions", ["username"])
    if "series" in absent:
        op.create_table(
            "series",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("study_pk", sa.Integer(), nullable=False),
            sa.Column("series_uid", sa.String(length=64), nullable=False),
            sa.Column("modality", sa.String(length=16), nullable=False),
            sa.Column("series_number", sa.String(length=12), nullable=False),
            sa.Column("description", sa.String(length=64), nullable=False),
            sa.Column("body_part", sa.String(length=64), nullable=False),
            sa.ForeignKeyConstraint(
                ["study_pk"],
                ["studies.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("series_uid"),
        )
        op.create_index("ix_series_modality", "series", ["modality"])
        op.create_index("ix_series_study_pk", "series", ["study_pk"])
    if "instances" in absent:
        op.create_table(
            "instances",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("series_pk", sa.Integer(), nullable=False),
            sa.Column("sop_uid", sa.String(length=64), nullable=False),
            sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
            sa.Column("instance_number", sa.String(length=12), nullable=False),
            sa.Column("number_of_frames", sa.Integer(), nullable=False),
            sa.Column("container_identifier", sa.String(length=64), nullable=False),
            sa.Column("path", sa.Text(), nullable=False),
            sa.Column("size", sa.BigInteger(), nullable=False),
            sa.Column("transfer_syntax", sa.String(length=64), nullable=False),
            sa.Column("charset", sa.String(length=128), nullable=False),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("origin", sa.String(length=80), nullable=False),
            sa.ForeignKeyConstraint(
                ["series_pk"],
                ["series.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("sop_uid"),
        )
        op.create_index("ix_instances_container", "instances", ["container_identifier"])
        op.create_index("ix_instances_series_pk", "instances", ["series_pk"])


def downgrade() -> None:
    op.drop_table("instances")
    op.drop_table("series")
    op.drop_table("viewer_sessions")
    op.drop_table("studies")
    op.drop_table("context_studies")
    op.drop_table("viewing_contexts")
    op.drop_table("settings")
    op.drop_table("roles")
    op.drop_table("patients")
    op.drop_table("ngv_storage_mappings")
    op.drop_table("hanging_protocols")
    op.drop_table("audit_events")
