"""feedback: the rated answer's output tokens

Revision ID: 20261123d_feedback
Revises: 20261123c_answers
Create Date: 2026-11-23 06:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261123d_feedback"
down_revision: str | None = "20261123c_answers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("output_tokens", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("output_tokens")
