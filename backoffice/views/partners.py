"""Partners menu: resellers, customers and their subscriptions."""

from __future__ import annotations

from ..models import (
    Customer,
    CustomerAdmin,
    Inventory,
    Reseller,
    Subscription,
    SubscriptionTerm,
)
from .base import ReadOnlyModelView, link_formatter, links_formatter

CATEGORY = "Partners"


class ResellerView(ReadOnlyModelView):
    column_list = ("id", "company_name", "city", "country", "status", "status_changed_at",
                   "created_at")
    column_details_list = ("id", "company_name", "address1", "address2", "address3", "city",
                           "postal_code", "state", "country", "status", "status_reason",
                           "status_changed_by", "status_changed_at", "customers", "created_at")
    column_searchable_list = ("company_name", "city")
    column_filters = ("status", "country", "created_at")
    column_formatters = {"customers": links_formatter("customer")}


class CustomerView(ReadOnlyModelView):
    column_list = ("id", "company_name", "city", "country", "reseller",
                   "administrative_responsibility", "currency", "created_at")
    column_details_list = ("id", "company_name", "address1", "address2", "address3", "city",
                           "postal_code", "state", "country", "reseller",
                           "administrative_responsibility", "customer_admin_email", "admins",
                           "currency", "subscriptions", "created_at")
    column_searchable_list = ("company_name", "customer_admin_email", "city")
    column_filters = ("administrative_responsibility", "country", "currency",
                      "reseller.company_name", "created_at")
    column_formatters = {
        "reseller": link_formatter("reseller"),
        "subscriptions": links_formatter("subscription"),
    }
    column_labels = {"reseller": "Partner management",
                     "administrative_responsibility": "Administrative responsibility"}


class CustomerAdminView(ReadOnlyModelView):
    column_list = ("id", "email", "customer", "created_at")
    column_searchable_list = ("email",)
    column_formatters = {"customer": link_formatter("customer")}


class SubscriptionView(ReadOnlyModelView):
    column_list = ("id", "customer", "product", "term_months", "start_date", "end_date",
                   "auto_renew", "status")
    column_details_list = ("id", "customer", "product", "term_months", "start_date",
                           "end_date", "auto_renew", "status", "inventory", "terms",
                           "created_at")
    column_filters = ("status", "auto_renew", "term_months", "end_date", "start_date",
                      "product.name", "customer.company_name")
    column_searchable_list = ("customer.company_name",)
    column_formatters = {
        "customer": link_formatter("customer"),
        "inventory": lambda v, c, m, n: ", ".join(
            f"{i.certificate_type.code}: {i.quantity} now, {i.renewal_quantity} at renewal"
            for i in m.inventory
        ),
        "terms": lambda v, c, m, n: ", ".join(
            f"{t.start_date.isoformat()} to {t.end_date.isoformat()}" for t in m.terms
        ),
    }
    column_labels = {"term_months": "Term (months)"}


class InventoryView(ReadOnlyModelView):
    column_list = ("id", "subscription", "certificate_type", "quantity", "renewal_quantity")
    column_filters = ("certificate_type.code",)
    column_formatters = {"subscription": link_formatter("subscription")}
    column_labels = {"quantity": "Current inventory", "renewal_quantity": "Renewal inventory"}


class SubscriptionTermView(ReadOnlyModelView):
    column_list = ("id", "subscription", "start_date", "end_date", "created_at")
    column_filters = ("start_date", "end_date")
    column_formatters = {"subscription": link_formatter("subscription")}


def register(admin, db) -> None:
    """Add the Partners menu to the console."""
    admin.add_view(ResellerView(Reseller, db, name="Resellers", category=CATEGORY))
    admin.add_view(CustomerView(Customer, db, name="Customers", category=CATEGORY))
    admin.add_view(CustomerAdminView(CustomerAdmin, db, name="Customer admins",
                                     category=CATEGORY))
    admin.add_view(SubscriptionView(Subscription, db, name="Subscriptions", category=CATEGORY))
    admin.add_view(InventoryView(Inventory, db, name="Inventory", category=CATEGORY))
    admin.add_view(SubscriptionTermView(SubscriptionTerm, db, name="Subscription terms",
                                        category=CATEGORY))
