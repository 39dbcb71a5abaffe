"""Accounts menu: storefront profiles, organizations, requests, legacy credit, orders."""

from __future__ import annotations

from flask import current_app
from markupsafe import Markup

from ..models import (
    CorporateRequest,
    CreditEntry,
    LegacyAccount,
    License,
    Order,
    OrderItem,
    Organization,
    Profile,
)
from .base import ReadOnlyModelView, link_formatter, links_formatter, money_column

CATEGORY = "Accounts"


class ProfileView(ReadOnlyModelView):
    column_list = ("id", "email", "name", "currency", "organization", "org_role",
                   "credit_balance", "created_at")
    column_searchable_list = ("email", "name")
    column_filters = ("currency", "org_role", "organization.name", "created_at")
    column_sortable_list = ("id", "email", "name", "credit_balance", "created_at")
    column_formatters = {
        "credit_balance": money_column(),
        "organization": link_formatter("organization"),
    }
    column_labels = {"org_role": "Role in organization", "credit_balance": "Prepaid credit"}


class OrganizationView(ReadOnlyModelView):
    column_list = ("id", "name", "main_contact", "created_at")
    column_details_list = ("id", "name", "main_contact", "members", "financial_terms",
                           "created_at")
    column_searchable_list = ("name",)
    column_filters = ("created_at",)
    column_formatters = {
        "main_contact": link_formatter("profile"),
        "members": links_formatter("profile"),
    }
    column_labels = {"financial_terms": "Agreed financial conditions"}


class CorporateRequestView(ReadOnlyModelView):
    column_list = ("id", "organization_name", "main_contact_email", "status", "created_at",
                   "processed_by", "processed_at")
    column_searchable_list = ("organization_name", "main_contact_email")
    column_filters = ("status", "created_at", "processed_at")
    column_default_sort = ("created_at", True)


class LegacyAccountView(ReadOnlyModelView):
    column_list = ("id", "legacy_number", "email", "name", "currency", "credit_balance",
                   "transferred_at", "transferred_to", "transferred_amount")
    column_searchable_list = ("legacy_number", "email", "name")
    column_filters = ("currency", "transferred_at")
    column_formatters = {
        "credit_balance": money_column(),
        "transferred_amount": money_column(),
        "transferred_to": link_formatter("profile"),
    }
    column_labels = {"legacy_number": "Legacy account"}


class OrderView(ReadOnlyModelView):
    column_list = ("number", "placed_by", "paid_by", "status", "payment_method", "currency",
                   "total", "created_at", "paid_at")
    column_details_list = ("number", "placed_by", "paid_by", "status", "payment_method",
                           "billing", "currency", "total", "invoice", "created_at", "paid_at")
    column_searchable_list = ("number",)
    column_filters = ("status", "payment_method", "currency", "created_at", "paid_at",
                      "placed_by.email", "paid_by.email")
    column_sortable_list = ("number", "status", "total", "created_at", "paid_at")
    column_default_sort = ("created_at", True)
    column_formatters = {
        "total": money_column(),
        "placed_by": link_formatter("profile"),
        "paid_by": link_formatter("profile"),
        "invoice": link_formatter("invoice"),
    }


class OrderItemView(ReadOnlyModelView):
    column_list = ("id", "order", "certificate_type", "quantity", "unit_price", "amount")
    column_filters = ("certificate_type.code",)
    column_formatters = {
        "order": link_formatter("order"),
        "unit_price": money_column("order.currency"),
        "amount": money_column("order.currency"),
    }


def _tracking_link(_view, _context, model: License, _name) -> Markup:
    template = current_app.config["TRACKING_URL_TEMPLATE"]
    url = template.format(ref=model.ca_reference)
    return Markup('<a href="{}" target="_blank" rel="noopener">{}</a>').format(
        url, model.ca_reference
    )


class LicenseView(ReadOnlyModelView):
    column_list = ("ca_reference", "kind", "order_item.order", "acme_directory_url",
                   "eab_key_id", "created_at")
    column_searchable_list = ("ca_reference",)
    column_filters = ("kind", "created_at")
    column_formatters = {"ca_reference": _tracking_link}
    column_labels = {"ca_reference": "CA Reference", "order_item.order": "Order",
                     "eab_key_id": "EAB key id", "acme_directory_url": "ACME directory URL"}


class CreditEntryView(ReadOnlyModelView):
    column_list = ("id", "profile", "kind", "amount", "balance_after", "order",
                   "legacy_account", "actor", "memo", "created_at")
    column_filters = ("kind", "created_at", "profile.email")
    column_searchable_list = ("memo",)
    column_formatters = {
        "amount": money_column("profile.currency"),
        "balance_after": money_column("profile.currency"),
        "profile": link_formatter("profile"),
        "order": link_formatter("order"),
    }


def register(admin, db) -> None:
    """Add the Accounts menu to the console."""
    admin.add_view(ProfileView(Profile, db, name="Profiles", category=CATEGORY))
    admin.add_view(OrganizationView(Organization, db, name="Organizations", category=CATEGORY))
    admin.add_view(CorporateRequestView(CorporateRequest, db, name="Corporate requests",
                                        category=CATEGORY))
    admin.add_view(LegacyAccountView(LegacyAccount, db, name="Legacy accounts",
                                     category=CATEGORY))
    admin.add_view(OrderView(Order, db, name="Orders", category=CATEGORY))
    admin.add_view(OrderItemView(OrderItem, db, name="Order items", category=CATEGORY))
    admin.add_view(LicenseView(License, db, name="Licenses", category=CATEGORY))
    admin.add_view(CreditEntryView(CreditEntry, db, name="Credit ledger", category=CATEGORY))
