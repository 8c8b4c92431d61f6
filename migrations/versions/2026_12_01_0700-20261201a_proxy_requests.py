"""proxy requests: idempotency keys and retried bodies, so a retry reuses its decision

Revision ID: 20261201a_proxy_requests
Revises: 20261123d_feedback
Create Date: 2026-12-01 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201a_proxy_requests"
down_revision: str | None = "20261123d_feedback"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "proxy_requests",
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caller", sa.String(length=20), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("decision_id"),
        sa.UniqueConstraint("caller", "idempotency_key", name="uq_proxy_requests_key"),
    )
    op.create_index(
        "ix_proxy_requests_body", "proxy_requests", ["caller", "body_hash", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_proxy_requests_body", table_name="proxy_requests")
    op.drop_table("proxy_requests")
