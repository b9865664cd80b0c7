"""Annotators' verdicts on the attention regions they were shown (fixed, not an error), stored with
the revision: attention's precision as people judged it (issue #22).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 18:45:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'region_verdicts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('revision_id', sa.String(length=40), nullable=False),
        sa.Column('case_id', sa.String(length=64), nullable=False),
        sa.Column('organ', sa.String(length=32), nullable=False),
        sa.Column('min_mm', sa.JSON(), nullable=False),
        sa.Column('max_mm', sa.JSON(), nullable=False),
        sa.Column('verdict', sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id']),
        sa.ForeignKeyConstraint(['revision_id'], ['revisions.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('region_verdicts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_region_verdicts_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_region_verdicts_revision_id'), ['revision_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('region_verdicts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_region_verdicts_revision_id'))
        batch_op.drop_index(batch_op.f('ix_region_verdicts_case_id'))
    op.drop_table('region_verdicts')
