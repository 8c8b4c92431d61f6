"""proxy answers: output tokens

Revision ID: 20261123c_answers
Revises: 20261123b_audits
Create Date: 2026-11-23 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261123c_answers"
down_revision: str | None = "20261123b_audits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("proxy_answers") as batch:
        batch.add_column(sa.Column("output_tokens", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("proxy_answers") as batch:
        batch.drop_column("output_tokens")
