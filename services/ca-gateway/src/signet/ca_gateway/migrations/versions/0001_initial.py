"""Initial schema of the ca-gateway service: its tables plus the shared outbox tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from signet.common import outbox

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    outbox.upgrade_ops()
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


def downgrade() -> None:
    op.drop_table("revocations")
    op.drop_index(op.f("ix_certificates_tenant"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_not_after"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_key_id"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_account_id"), table_name="certificates")
    op.drop_table("certificates")
    outbox.downgrade_ops()
