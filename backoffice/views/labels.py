"""Column names written for people, the same on every list, detail page and search box."""

from __future__ import annotations

#: a column's name wherever a view does not give its own label
COLUMN_LABELS = {
    "id": "Id",
    "address1": "Address line 1",
    "address2": "Address line 2",
    "address3": "Address line 3",
    "postal_code": "Postal code",
    "state": "State / province",
    "company_name": "Company",
    "customer_admin_email": "Customer admin's email",
    "main_contact_email": "Main contact's email",
    "organization_name": "Organization",
    "ca_reference": "CA Reference",
    "credit_balance": "Credit balance",
    "created_at": "Created",
    "updated_at": "Updated",
    "issued_at": "Issued",
    "paid_at": "Paid",
    "sent_at": "Sent",
    "processed_at": "Processed",
    "processed_by": "Processed by",
    "transferred_at": "Moved",
    "transferred_by": "Moved by",
    "status_changed_at": "Status changed",
    "last_login_at": "Last sign-in",
    "started_at": "Started",
    "finished_at": "Finished",
    "lease_until": "Lease until",
    "legacy_number": "Legacy number",
    "end_date": "Term end",
    "auto_renew": "Auto-renew",
    "org_role": "Role in organization",
    "vat_number": "VAT number",
    "yearly_price": "Yearly price",
    "terms_months": "Terms (months)",
    "administrative_responsibility": "Administrative responsibility",
}


class PeopleLabelsMixin:
    """Flask-Admin model views: names from ``column_labels``, else :data:`COLUMN_LABELS`,
    else the column name made readable; the search box says what it searches."""

    column_labels: dict | None = None
    column_searchable_list: tuple | None = None

    def get_column_name(self, field: str) -> str:
        if self.column_labels and field in self.column_labels:
            return str(self.column_labels[field])
        if field in COLUMN_LABELS:
            return COLUMN_LABELS[field]
        return field.replace("_", " ").capitalize()

    def search_placeholder(self) -> str | None:
        if not self.column_searchable_list:
            return None
        names = [self.get_column_name(getattr(column, "key", column))
                 for column in self.column_searchable_list]
        return "Search by " + ", ".join(name[0].lower() + name[1:] if not name.isupper()
                                        and not name.startswith("CA") else name
                                        for name in names)
