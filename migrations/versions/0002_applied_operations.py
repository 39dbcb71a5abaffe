"""applied operations

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 07:49:58.843347

One row per applied Review -> Confirm operation, keyed by its idempotency key.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('applied_operation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('result_url', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_user.id'], name=op.f('fk_applied_operation_staff_id_staff_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_applied_operation')),
    sa.UniqueConstraint('key', name=op.f('uq_applied_operation_key'))
    )
    with op.batch_alter_table('applied_operation', schema=None) as batch_op:
        batch_op.create_index('ix_applied_operation_created_at', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_applied_operation_staff_id'), ['staff_id'], unique=False)



def downgrade():
    with op.batch_alter_table('applied_operation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_applied_operation_staff_id'))
        batch_op.drop_index('ix_applied_operation_created_at')

    op.drop_table('applied_operation')
