"""A revision remembers the upload its label came from, so that a submission retried after a lost
answer (a restarted service, a dropped connection) returns the revision it made instead of
failing on the lease it ended.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 22:10:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('upload_id', sa.String(length=64), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.drop_column('upload_id')
