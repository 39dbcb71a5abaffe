"""job run arguments: a run asked for with more than its job's default

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 15:00:00.000000

``job_run.arguments``: keyword arguments for the job's body, set when a run is queued
with them (the Monthly invoices page hands a large month to the job runner as
``{"month": "2026-11"}``) and carried to the recovery run of an abandoned one. Every
existing run had none: ``{}``.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('arguments', sa.JSON(), server_default=sa.text("'{}'"),
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.drop_column('arguments')
