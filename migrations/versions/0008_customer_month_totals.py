"""customer month totals and the summaries' mark: sums kept day by day

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 03:30:00.000000

``customer_month_total``: each UTC month's transactions summed per partner customer,
currency and the invoice carrying them (none while still to invoice). The Monthly
invoices page, the review of a month's invoices and the dashboard's "not invoiced" total
read these rows instead of the transactions.

``summary_mark``: how far the summaries go. Both ``monthly_total`` and
``customer_month_total`` are now summed day by day (each finished day added once, up to
the mark), so readers sum live only the transactions made since the mark. The rows
``monthly_total`` held (whole finished months, with no mark) are removed: the next
nightly run, ``flask seed-scale`` or the demo seed sums every day again into both
tables, and until then everything is read live as before. ``monthly_total`` also counts
its transactions now, for the transaction report's totals.

The partial index of the transactions still to invoice is keyed by date instead of
currency, for the live months, and holds what their sums read (PostgreSQL's INCLUDE).
On a large table, build it by hand first with ``CREATE INDEX CONCURRENTLY`` (same name
and definition) and this migration's ``IF NOT EXISTS`` leaves it be.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

UNINVOICED = 'invoice_id IS NULL'
INVOICED = 'invoice_id IS NOT NULL'


def upgrade():
    op.create_table('customer_month_total',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=True),
    sa.Column('transactions', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_customer_month_total_customer_id_customer')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], name=op.f('fk_customer_month_total_invoice_id_invoice')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_month_total'))
    )
    op.create_table('summary_mark',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('id = 1', name=op.f('ck_summary_mark_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_summary_mark'))
    )
    op.execute('DELETE FROM monthly_total')
    op.add_column('monthly_total', sa.Column('transactions', sa.Integer(),
                                             server_default=sa.text('0'), nullable=False))
    op.create_index('uq_customer_month_total_uninvoiced', 'customer_month_total',
                    ['customer_id', 'month', 'currency'], unique=True,
                    postgresql_include=['transactions', 'amount'],
                    postgresql_where=sa.text(UNINVOICED), sqlite_where=sa.text(UNINVOICED))
    op.create_index('uq_customer_month_total_invoiced', 'customer_month_total',
                    ['customer_id', 'month', 'currency', 'invoice_id'], unique=True,
                    postgresql_where=sa.text(INVOICED), sqlite_where=sa.text(INVOICED))
    op.create_index('ix_transaction_uninvoiced_created', 'transaction', ['created_at'],
                    if_not_exists=True,
                    postgresql_include=['customer_id', 'currency', 'amount'],
                    postgresql_where=sa.text(UNINVOICED), sqlite_where=sa.text(UNINVOICED))
    op.drop_index('ix_transaction_uninvoiced', table_name='transaction')


def downgrade():
    op.create_index('ix_transaction_uninvoiced', 'transaction', ['currency'],
                    postgresql_include=['amount'],
                    postgresql_where=sa.text(UNINVOICED), sqlite_where=sa.text(UNINVOICED))
    op.drop_index('ix_transaction_uninvoiced_created', table_name='transaction')
    with op.batch_alter_table('monthly_total') as batch:
        batch.drop_column('transactions')
    op.drop_table('summary_mark')
    op.drop_table('customer_month_total')
