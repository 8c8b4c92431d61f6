"""policy_versions: query regions and per-region learning counts

Revision ID: 20261201b_regions
Revises: 20261201a_proxy_requests
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201b_regions"
down_revision: str | None = "20261201a_proxy_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("policy_versions") as batch:
        batch.add_column(sa.Column("regions", sa.LargeBinary(), nullable=True))
        batch.add_column(
            sa.Column("region_counts", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("policy_versions") as batch:
        batch.drop_column("region_counts")
        batch.drop_column("regions")
