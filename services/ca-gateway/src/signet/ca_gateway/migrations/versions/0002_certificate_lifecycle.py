"""The certificate lifecycle's schema: CA certificates, requests, CRLs, richer records.

The first schema's ``certificates`` and ``revocations`` tables never held a row (the
service answered UNIMPLEMENTED until this revision), so they are replaced, not altered.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("revocations")
    op.drop_index(op.f("ix_certificates_tenant"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_not_after"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_key_id"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_account_id"), table_name="certificates")
    op.drop_table("certificates")
    op.create_table(
        "ca_certificates",
        sa.Column("ca_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("issuer_ca_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("key_algorithm", sa.String(length=32), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ca_id", name=op.f("pk_ca_certificates")),
    )
    op.create_index(op.f("ix_ca_certificates_role"), "ca_certificates", ["role"], unique=False)
    op.create_table(
        "certificate_requests",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archive_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "request_id", name=op.f("pk_certificate_requests")),
    )
    op.create_index(
        op.f("ix_certificate_requests_serial"), "certificate_requests", ["serial"], unique=False
    )
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("issuer_ca_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("system_owner", sa.String(length=64), nullable=True),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("key_algorithm", sa.String(length=32), nullable=False),
        sa.Column("profile", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column(
            "state",
            sa.Enum("issued", "revoked", name="certificatestate", native_enum=False),
            nullable=False,
        ),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("auto_renewal", sa.Boolean(), nullable=False),
        sa.Column("renew_before_seconds", sa.Integer(), nullable=True),
        sa.Column("renewed_from", sa.String(length=64), nullable=True),
        sa.Column("renewed_by", sa.String(length=64), nullable=True),
        sa.Column("expiry_notice_days", sa.Integer(), nullable=True),
        sa.Column("archive_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_certificates")),
    )
    op.create_index(
        op.f("ix_certificates_account_id"), "certificates", ["account_id"], unique=False
    )
    op.create_index(
        op.f("ix_certificates_created_at"), "certificates", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_certificates_issuer_ca_id"), "certificates", ["issuer_ca_id"], unique=False
    )
    op.create_index(op.f("ix_certificates_key_id"), "certificates", ["key_id"], unique=False)
    op.create_index(op.f("ix_certificates_not_after"), "certificates", ["not_after"], unique=False)
    op.create_index(op.f("ix_certificates_tenant"), "certificates", ["tenant"], unique=False)
    op.create_table(
        "crls",
        sa.Column("ca_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("revoked_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ca_id", "number", name=op.f("pk_crls")),
    )
    op.create_table(
        "revocations",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("reason_code", sa.Integer(), nullable=False),
        sa.Column("initiator", sa.String(length=16), nullable=False),
        sa.Column("invalidity_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("key_settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archive_until", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["serial"], ["certificates.serial"], name=op.f("fk_revocations_serial_certificates")
        ),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_revocations")),
    )
    op.create_index(op.f("ix_revocations_revoked_at"), "revocations", ["revoked_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ca_certificates_role"), table_name="ca_certificates")
    op.drop_index(op.f("ix_certificate_requests_serial"), table_name="certificate_requests")
    op.drop_index(op.f("ix_certificates_account_id"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_created_at"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_issuer_ca_id"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_key_id"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_not_after"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_tenant"), table_name="certificates")
    op.drop_index(op.f("ix_revocations_revoked_at"), table_name="revocations")
    op.drop_table("revocations")
    op.drop_table("crls")
    op.drop_table("certificates")
    op.drop_table("certificate_requests")
    op.drop_table("ca_certificates")
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("profile", sa.String(length=32), nullable=False),
        sa.Column(
            "state",
            sa.Enum("issued", "revoked", name="certificatestate", native_enum=False),
            nullable=False,
        ),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("auto_renew", sa.Boolean(), nullable=False),
        sa.Column("archive_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_certificates")),
    )
    op.create_index(
        op.f("ix_certificates_account_id"), "certificates", ["account_id"], unique=False
    )
    op.create_index(op.f("ix_certificates_key_id"), "certificates", ["key_id"], unique=False)
    op.create_index(op.f("ix_certificates_not_after"), "certificates", ["not_after"], unique=False)
    op.create_index(op.f("ix_certificates_tenant"), "certificates", ["tenant"], unique=False)
    op.create_table(
        "revocations",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason_code", sa.Integer(), nullable=False),
        sa.Column("ground", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["serial"], ["certificates.serial"], name=op.f("fk_revocations_serial_certificates")
        ),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_revocations")),
    )
