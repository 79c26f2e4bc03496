"""Initial schema of the identity service: its tables plus the shared outbox tables.

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
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("external_ref", sa.String(length=128), nullable=True),
        sa.Column(
            "type",
            sa.Enum("person", "enterprise", name="accounttype", native_enum=False),
            nullable=False,
        ),
        sa.Column(
            "state",
            sa.Enum(
                "registered",
                "verified",
                "suspended",
                "cancelling",
                "cancelled",
                name="accountstate",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("display_name_masked", sa.String(length=200), nullable=False),
        sa.Column("name_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("id_number_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("id_number_lookup", sa.String(length=64), nullable=True),
        sa.Column("phone_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("phone_lookup", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_accounts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("tenant_id", "external_ref", name=op.f("uq_accounts_tenant_id")),
    )
    op.create_index(
        op.f("ix_accounts_id_number_lookup"), "accounts", ["id_number_lookup"], unique=False
    )
    op.create_index(op.f("ix_accounts_phone_lookup"), "accounts", ["phone_lookup"], unique=False)
    op.create_index(op.f("ix_accounts_tenant_id"), "accounts", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_accounts_tenant_id"), table_name="accounts")
    op.drop_index(op.f("ix_accounts_phone_lookup"), table_name="accounts")
    op.drop_index(op.f("ix_accounts_id_number_lookup"), table_name="accounts")
    op.drop_table("accounts")
    op.drop_table("tenants")
    outbox.downgrade_ops()
