"""Keys: why a key was retired, and the caller's idempotency key for CreateKey.

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
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("retirement_reason", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))
        batch.create_unique_constraint(op.f("uq_keys_request_id"), ["request_id"])


def downgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.drop_constraint(op.f("uq_keys_request_id"), type_="unique")
        batch.drop_column("request_id")
        batch.drop_column("retirement_reason")
