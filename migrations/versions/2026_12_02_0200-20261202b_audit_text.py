"""audits: the text a grader reads (audit_texts), every grade with rubric and comment
(audit_grades), and a second grade's state on audits

Revision ID: 20261202b_audit_text
Revises: 20261202a_retention
Create Date: 2026-12-02 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202b_audit_text"
down_revision: str | None = "20261202a_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_texts",
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    op.create_index("ix_audit_texts_created_at", "audit_texts", ["created_at"])
    op.create_table(
        "audit_grades",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("grader", sa.String(length=200), nullable=False),
        sa.Column("grader_name", sa.String(length=200), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("rubric", sa.String(length=64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("decision_id", "round", name="uq_audit_grades_round"),
    )
    op.create_index("ix_audit_grades_created_at", "audit_grades", ["created_at"])
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("review_status", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("review_claimed_by", sa.String(length=200), nullable=True))
        batch.add_column(
            sa.Column("review_claim_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_audits_review_status", ["review_status", "id"])


def downgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.drop_index("ix_audits_review_status")
        batch.drop_column("review_claim_expires_at")
        batch.drop_column("review_claimed_by")
        batch.drop_column("review_status")
    op.drop_index("ix_audit_grades_created_at", table_name="audit_grades")
    op.drop_table("audit_grades")
    op.drop_index("ix_audit_texts_created_at", table_name="audit_texts")
    op.drop_table("audit_texts")
