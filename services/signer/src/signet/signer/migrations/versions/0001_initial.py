"""Initial schema of the signer service: its tables plus the shared outbox tables.

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
        "consumed_grants",
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_consumed_grants")),
    )
    op.create_index(
        op.f("ix_consumed_grants_expires_at"), "consumed_grants", ["expires_at"], unique=False
    )
    op.create_table(
        "keys",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("system_owner", sa.String(length=64), nullable=True),
        sa.Column(
            "state",
            sa.Enum("active", "disabled", "destroyed", name="keystate", native_enum=False),
            nullable=False,
        ),
        sa.Column("public_key_der", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keys")),
    )
    op.create_index(op.f("ix_keys_account_id"), "keys", ["account_id"], unique=False)
    op.create_index(op.f("ix_keys_tenant"), "keys", ["tenant"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_keys_tenant"), table_name="keys")
    op.drop_index(op.f("ix_keys_account_id"), table_name="keys")
    op.drop_table("keys")
    op.drop_index(op.f("ix_consumed_grants_expires_at"), table_name="consumed_grants")
    op.drop_table("consumed_grants")
    outbox.downgrade_ops()
