"""monthly totals and the dashboard's partial indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 19:30:00.000000

``monthly_total``: each finished UTC month's transactions summed per currency and kind,
which the dashboard's twelve-month charts read instead of the rows (the current month
stays live). Filled by the nightly ledger check job, ``flask seed-scale`` and the demo
seed; a database upgraded without them fills it at the next nightly run, and until then
the charts compute every month live as before.

Partial indexes on ``transaction`` for the dashboard's finance queue: charges by date
(the refund windows closing this week), refunds by date and the transactions not
invoiced yet, the last two carrying the columns their sums read (PostgreSQL's INCLUDE;
SQLite indexes only the key). On a large table, build them by hand first with
``CREATE INDEX CONCURRENTLY`` (same names and definitions) and this migration's
``IF NOT EXISTS`` leaves them be.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

#: (name, columns, included columns, condition) of the partial indexes on transaction
INDEXES = [
    ('ix_transaction_charge_created', ['created_at', 'id'], [], "kind = 'charge'"),
    ('ix_transaction_refund_created', ['created_at'], ['currency', 'amount'],
     "kind = 'refund'"),
    ('ix_transaction_uninvoiced', ['currency'], ['amount'], 'invoice_id IS NULL'),
]


def upgrade():
    op.create_table('monthly_total',
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('kind', sa.Enum('charge', 'refund', name='transaction_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('renewals', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('month', 'currency', 'kind', name=op.f('pk_monthly_total'))
    )
    for name, columns, include, where in INDEXES:
        op.create_index(name, 'transaction', columns, if_not_exists=True,
                        postgresql_include=include, postgresql_where=sa.text(where),
                        sqlite_where=sa.text(where))


def downgrade():
    for name, _columns, _include, _where in INDEXES:
        op.drop_index(name, table_name='transaction')
    op.drop_table('monthly_total')
