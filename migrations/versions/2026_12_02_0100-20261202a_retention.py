"""retention: daily aggregates that outlive the purged decisions

Revision ID: 20261202a_retention
Revises: 20261201b_regions
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202a_retention"
down_revision: str | None = "20261201b_regions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COUNTS = ("decisions", "feedback", "audits")
SUMS = ("reward_sum", "cost_usd", "gold_sum")


def upgrade() -> None:
    op.create_table(
        "daily_aggregates",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS),
        *(sa.Column(name, sa.Float(), nullable=False) for name in SUMS),
        sa.PrimaryKeyConstraint("day", "model"),
    )


def downgrade() -> None:
    op.drop_table("daily_aggregates")
