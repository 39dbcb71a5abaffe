"""list indexes: keyset sorts, detail pages and trigram search

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 09:00:00.000000

Indexes for the sorts the lists offer and the pages that list a record's rows, each
ending in ``id`` so that keyset pages (sort key, then id) read straight off the index:
orders, invoices, profiles and audit events by creation; a customer's and a
subscription's transactions, a profile's ledger and the orders placed or paid by a
profile, newest first; the request queue and the job runs in their default order. They replace the single-column indexes they lead with.

On PostgreSQL, the pg_trgm extension and GIN trigram indexes for the searches by
fragment (email, names, company names, CA Reference, order and invoice numbers).
SQLite has no such index: its searches stay LIKE scans, and these are skipped there.

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

#: (name, table, columns) of the btree indexes, on every database
INDEXES = [
    ('ix_order_created_at', 'order', ['created_at', 'id']),
    ('ix_order_placed_by_created', 'order', ['placed_by_id', 'created_at', 'id']),
    ('ix_order_paid_by_created', 'order', ['paid_by_id', 'created_at', 'id']),
    ('ix_invoice_issued_at', 'invoice', ['issued_at', 'id']),
    ('ix_profile_name', 'profile', ['name', 'id']),
    ('ix_profile_created_at', 'profile', ['created_at', 'id']),
    ('ix_credit_entry_profile_created', 'credit_entry', ['profile_id', 'created_at', 'id']),
    ('ix_transaction_customer_created', 'transaction', ['customer_id', 'created_at', 'id']),
    ('ix_transaction_subscription_created', 'transaction',
     ['subscription_id', 'created_at', 'id']),
    ('ix_audit_event_created_at', 'audit_event', ['created_at', 'id']),
    ('ix_corporate_request_created_at', 'corporate_request', ['created_at', 'id']),
    ('ix_job_run_started_at', 'job_run', ['started_at', 'id']),
]

#: (name, table, columns) of the indexes the ones above make redundant
REPLACED = [
    ('ix_order_placed_by_id', 'order', ['placed_by_id']),
    ('ix_order_paid_by_id', 'order', ['paid_by_id']),
    ('ix_credit_entry_profile_id', 'credit_entry', ['profile_id']),
    ('ix_transaction_customer_id', 'transaction', ['customer_id']),
    ('ix_transaction_subscription_id', 'transaction', ['subscription_id']),
]

#: (name, table, column) of the trigram indexes, PostgreSQL only
TRIGRAM = [
    ('ix_profile_email_trgm', 'profile', 'email'),
    ('ix_profile_name_trgm', 'profile', 'name'),
    ('ix_organization_name_trgm', 'organization', 'name'),
    ('ix_customer_company_name_trgm', 'customer', 'company_name'),
    ('ix_customer_customer_admin_email_trgm', 'customer', 'customer_admin_email'),
    ('ix_customer_city_trgm', 'customer', 'city'),
    ('ix_customer_admin_email_trgm', 'customer_admin', 'email'),
    ('ix_reseller_company_name_trgm', 'reseller', 'company_name'),
    ('ix_reseller_city_trgm', 'reseller', 'city'),
    ('ix_license_ca_reference_trgm', 'license', 'ca_reference'),
    ('ix_order_number_trgm', 'order', 'number'),
    ('ix_invoice_number_trgm', 'invoice', 'number'),
]


def _postgresql() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


def upgrade():
    # the transaction list's index gains the id (same name, one more column)
    op.drop_index('ix_transaction_created_at', table_name='transaction')
    op.create_index('ix_transaction_created_at', 'transaction', ['created_at', 'id'])
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    for name, table, _columns in REPLACED:
        op.drop_index(name, table_name=table)
    if _postgresql():
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        for name, table, column in TRIGRAM:
            op.create_index(name, table, [column], postgresql_using='gin',
                            postgresql_ops={column: 'gin_trgm_ops'})


def downgrade():
    if _postgresql():
        # the extension stays: other objects of the database may use it
        for name, table, _column in TRIGRAM:
            op.drop_index(name, table_name=table)
    for name, table, columns in REPLACED:
        op.create_index(name, table, columns)
    for name, table, _columns in INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_index('ix_transaction_created_at', table_name='transaction')
    op.create_index('ix_transaction_created_at', 'transaction', ['created_at'])
