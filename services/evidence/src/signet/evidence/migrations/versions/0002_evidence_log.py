"""The evidence log's schema: Merkle nodes, sequenced entries, signed tree heads, tokens.

The first schema's ``log_entries`` and ``tree_heads`` never held a row (the service
answered UNIMPLEMENTED until this revision), so they are replaced, not altered.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from signet.common.db import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Row ids: 64-bit on PostgreSQL, SQLite's INTEGER (its rowid) there.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.drop_table("tree_heads")
    op.drop_index(op.f("ix_log_entries_leaf_hash"), table_name="log_entries")
    op.drop_table("log_entries")
    op.create_table(
        "log_entries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("event_time", UtcDateTime(), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=True),
        sa.Column("leaf_data", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("integrated_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_entries")),
        sa.UniqueConstraint("event_id", name=op.f("uq_log_entries_event_id")),
        sa.UniqueConstraint("leaf_index", name=op.f("uq_log_entries_leaf_index")),
    )
    for column in ("event_type", "subject", "tenant", "transaction_id", "leaf_hash"):
        op.create_index(op.f(f"ix_log_entries_{column}"), "log_entries", [column], unique=False)
    op.create_table(
        "entry_refs",
        sa.Column("entry_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=160), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["log_entries.id"],
            name=op.f("fk_entry_refs_entry_id_log_entries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("entry_id", "kind", "value", name=op.f("pk_entry_refs")),
    )
    op.create_index("ix_entry_refs_kind_value", "entry_refs", ["kind", "value"], unique=False)
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("node_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index", name=op.f("pk_merkle_nodes")),
    )
    op.create_table(
        "tree_heads",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("timestamp", UtcDateTime(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tree_heads")),
    )
    op.create_index(op.f("ix_tree_heads_tree_size"), "tree_heads", ["tree_size"], unique=False)
    op.create_table(
        "service_keys",
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("spki_der", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("purpose", name=op.f("pk_service_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_service_keys_key_id")),
    )
    op.create_table(
        "timestamp_tokens",
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("gen_time", UtcDateTime(), nullable=False),
        sa.Column("imprint_algorithm", sa.String(length=16), nullable=False),
        sa.Column("imprint", sa.LargeBinary(length=64), nullable=False),
        sa.Column("token_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("token_der", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_timestamp_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_timestamp_tokens_token_sha256")),
    )
    op.create_index(
        op.f("ix_timestamp_tokens_imprint"), "timestamp_tokens", ["imprint"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_timestamp_tokens_imprint"), table_name="timestamp_tokens")
    op.drop_table("timestamp_tokens")
    op.drop_table("service_keys")
    op.drop_index(op.f("ix_tree_heads_tree_size"), table_name="tree_heads")
    op.drop_table("tree_heads")
    op.drop_table("merkle_nodes")
    op.drop_index("ix_entry_refs_kind_value", table_name="entry_refs")
    op.drop_table("entry_refs")
    for column in ("event_type", "subject", "tenant", "transaction_id", "leaf_hash"):
        op.drop_index(op.f(f"ix_log_entries_{column}"), table_name="log_entries")
    op.drop_table("log_entries")
    op.create_table(
        "log_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=True),
        sa.Column("leaf_data", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_entries")),
        sa.UniqueConstraint("event_id", name=op.f("uq_log_entries_event_id")),
        sa.UniqueConstraint("leaf_index", name=op.f("uq_log_entries_leaf_index")),
    )
    op.create_index(op.f("ix_log_entries_leaf_hash"), "log_entries", ["leaf_hash"], unique=False)
    op.create_table(
        "tree_heads",
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_tree_heads")),
    )
