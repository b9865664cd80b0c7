"""Leases remember what they were granted for: the label version to start from, the organs to
revise and whether the lease is a double read (GetLease answers with them).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 00:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('label_version', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('organs', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('double_read', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.drop_column('double_read')
        batch_op.drop_column('organs')
        batch_op.drop_column('label_version')
