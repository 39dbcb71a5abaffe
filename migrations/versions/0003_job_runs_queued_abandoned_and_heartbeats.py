"""job runs queued, abandoned and heartbeats

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 08:07:13.859902

Run now queues a run for the job runner; runs renew their lease with a heartbeat, and a
run whose process died is marked abandoned with who took over; job runners record when
they were last seen.

"""
from alembic import op
import sqlalchemy as sa

OLD_STATUSES = ('running', 'succeeded', 'failed')
NEW_STATUSES = ('queued', 'running', 'succeeded', 'failed', 'abandoned')


def _status(values):
    return sa.Enum(*values, name='job_status', native_enum=False, create_constraint=True,
                   length=32)


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('job_runner',
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('holder', name=op.f('pk_job_runner'))
    )
    with op.batch_alter_table('job_runner', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_runner_seen_at'), ['seen_at'], unique=False)

    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('requested_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('taken_over_by', sa.String(length=128), server_default='', nullable=False))
        batch_op.alter_column('started_at',
               existing_type=sa.DateTime(timezone=True),
               nullable=True)
        batch_op.create_index(batch_op.f('ix_job_run_requested_by_id'), ['requested_by_id'], unique=False)
        batch_op.create_index('ix_job_run_status', ['status', 'job'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_job_run_requested_by_id_staff_user'), 'staff_user', ['requested_by_id'], ['id'])
        batch_op.alter_column('status', existing_type=_status(OLD_STATUSES),
                              type_=_status(NEW_STATUSES), existing_nullable=False)



def downgrade():
    op.execute("UPDATE job_run SET status = 'failed' WHERE status IN ('queued', 'abandoned')")
    op.execute("UPDATE job_run SET started_at = requested_at WHERE started_at IS NULL")
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=_status(NEW_STATUSES),
                              type_=_status(OLD_STATUSES), existing_nullable=False)
        batch_op.drop_constraint(batch_op.f('fk_job_run_requested_by_id_staff_user'), type_='foreignkey')
        batch_op.drop_index('ix_job_run_status')
        batch_op.drop_index(batch_op.f('ix_job_run_requested_by_id'))
        batch_op.alter_column('started_at',
               existing_type=sa.DateTime(timezone=True),
               nullable=False)
        batch_op.drop_column('taken_over_by')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('requested_by_id')
        batch_op.drop_column('requested_at')

    with op.batch_alter_table('job_runner', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_runner_seen_at'))

    op.drop_table('job_runner')
