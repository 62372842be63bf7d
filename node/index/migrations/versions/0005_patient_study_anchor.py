"""A study without PatientID is a patient of its own.

Before, every instance with an empty PatientID (and the same issuer) joined one patient row, so
a viewer session for one such study was granted all the others as "history". Patients are now
keyed by (patient_id, issuer, study_anchor), the anchor being the study's UID for a patient
without PatientID and empty otherwise. The merged rows are split: each of their studies gets a
row of its own. Where a merged row held more than one study, its name, birth date and sex were
those of whichever instance came first, maybe another patient's: the split rows start with
none of them (unknown, never wrong), and the next instance received fills them.

A database made by create_all from the newer models already has the column and the
constraint: each step is done only where needed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from node.index.migrate import bind_of

revision = "0005_patient_study_anchor"
down_revision = "0004_waiting_studies_index"


def upgrade() -> None:
    bind = bind_of(op)
    inspector = sa.inspect(bind)
    columns = {str(c["name"]) for c in inspector.get_columns("patients")}
    uniques = {str(u["name"]) for u in inspector.get_unique_constraints("patients")}
    indexes = {str(i["name"]) for i in inspector.get_indexes("patients")}
    if bind.dialect.name == "sqlite":
        # SQLite changes a constraint by copying the table, and the studies' foreign keys
        # would refuse the DROP of the old copy; the connection is not reused after migrating
        # (migrate.upgrade), so its checks stay on everywhere else.
        bind.exec_driver_sql("PRAGMA foreign_keys = OFF")
    with op.batch_alter_table("patients") as batch:
        if "study_anchor" not in columns:
            batch.add_column(sa.Column("study_anchor", sa.String(length=64), nullable=False,
                                       server_default=""))
        if "uq_patient_id_issuer" in uniques:
            batch.drop_constraint("uq_patient_id_issuer", type_="unique")
        if "uq_patient_key" not in uniques:
            batch.create_unique_constraint("uq_patient_key",
                                           ["patient_id", "issuer", "study_anchor"])
    if "ix_patients_study_anchor" not in indexes:
        op.create_index("ix_patients_study_anchor", "patients", ["study_anchor"])
    _split_patients_without_id(bind)


def _split_patients_without_id(bind: sa.Connection) -> None:
    patients = sa.table("patients", sa.column("id", sa.Integer), sa.column("patient_id"),
                        sa.column("issuer"), sa.column("study_anchor"), sa.column("name"),
                        sa.column("name_search"), sa.column("birth_date"), sa.column("sex"),
                        sa.column("charset"))
    studies = sa.table("studies", sa.column("id", sa.Integer), sa.column("patient_pk"),
                       sa.column("study_uid"))
    merged = bind.execute(sa.select(patients.c.id, patients.c.issuer, patients.c.name,
                                    patients.c.name_search, patients.c.birth_date,
                                    patients.c.sex, patients.c.charset)
                          .where(patients.c.patient_id == "", patients.c.study_anchor == "")
                          ).all()
    for pk, issuer, name, name_search, birth_date, sex, charset in merged:
        rows = bind.execute(sa.select(studies.c.id, studies.c.study_uid)
                            .where(studies.c.patient_pk == pk).order_by(studies.c.id)).all()
        alone = len(rows) == 1
        for study_pk, study_uid in rows:
            new_pk = bind.execute(sa.insert(patients).values(
                patient_id="", issuer=issuer, study_anchor=study_uid,
                name=name if alone else "", name_search=name_search if alone else "",
                birth_date=birth_date if alone else "", sex=sex if alone else "",
                charset=charset).returning(patients.c.id)).scalar_one()
            bind.execute(sa.update(studies).where(studies.c.id == study_pk)
                         .values(patient_pk=new_pk))
        bind.execute(sa.delete(patients).where(patients.c.id == pk))


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.drop_constraint("uq_patient_key", type_="unique")
        batch.drop_index("ix_patients_study_anchor")
        batch.drop_column("study_anchor")
        batch.create_unique_constraint("uq_patient_id_issuer", ["patient_id", "issuer"])
