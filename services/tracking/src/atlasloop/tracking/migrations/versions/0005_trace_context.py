"""A case keeps the trace context of its import, so later work on it (a revision submitted days
later, from another client) joins the case's trace; outbox rows keep the context their event
travels with.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 02:10:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trace_context', sa.JSON(), server_default='{}', nullable=False))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trace_context', sa.JSON(), server_default='{}', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('trace_context')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('trace_context')
