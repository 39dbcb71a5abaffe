"""Every page of the console, as addresses to open with the data a test set up.

:func:`console_pages` walks the app's routes, so a new page is in the list as soon as it
exists; a new kind of record id in an address must be added to ``RECORD_FOR``. Used by the
header tests (test client) and the Content-Security-Policy tests (Chromium).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask

from backoffice import accounts, jobs, outbox, staff
from backoffice.extensions import db
from backoffice.models import (
    CorporateRequest,
    Customer,
    Invoice,
    LegacyAccount,
    Profile,
    Reseller,
    StaffUser,
    Subscription,
    Transaction,
    TransactionKind,
)

#: an address's record id -> the table it names
RECORD_FOR: dict[str, type] = {
    "customer_id": Customer,
    "invoice_id": Invoice,
    "request_id": CorporateRequest,
    "account_id": LegacyAccount,
    "profile_id": Profile,
    "reseller_id": Reseller,
    "subscription_id": Subscription,
    "user_id": StaffUser,
}
#: other address parts
VALUE_FOR: dict[str, str] = {"export_type": "csv"}
#: endpoints that are not pages: Flask-Admin's JSON lookups, files of static folders
NOT_PAGES = ("ajax_lookup", "static")


def more_demo_data() -> None:
    """What the demo data set leaves out and some pages show (call in an app context):
    an open corporate request for an individual profile, a queued email, a job run."""
    email = db.session.scalar(
        sa.select(Profile.email)
        .where(Profile.organization_id.is_(None))
        .order_by(Profile.id)
        .limit(1)
    )
    accounts.submit_corporate_request(
        organization_name="Initech",
        main_contact_email=email,
        secondary_emails=["milton@initech.example"],
    )
    outbox.queue(to="someone@example.com", subject="Hello", body="A queued message.")
    db.session.commit()
    jobs.run_job("ledger_check", trigger="cli")
    db.session.commit()


def _first_id(model: type) -> int | None:
    return db.session.scalar(sa.select(model.id).order_by(model.id).limit(1))


def console_pages(
    app: Flask,
    *,
    may_write: Callable[[object], bool] = lambda view: True,
) -> list[str]:
    """Every GET address of ``app`` with the records in the database (call in an app
    context): each model view's list, details, create and edit pages (create and edit
    where the view allows them and ``may_write(view)``), and every other page with the
    first record of the kind its address names. Downloads (CSV, PDF) are in the list."""
    admin = app.extensions["admin"][0]
    model_views = {view.endpoint: view for view in admin._views if hasattr(view, "model")}
    pages: list[str] = []
    for endpoint, view in model_views.items():
        base = f"/admin/{endpoint}/"
        pages.append(base)
        first = db.session.scalar(sa.select(view.model).limit(1))
        pk = view.get_pk_value(first) if first is not None else None
        if pk is not None:
            pages.append(f"{base}details/?id={pk}")
            # a record page with tabs has an address per tab (the old one moves there)
            pages += [f"{base}{pk}/{tab if tab != tabs[0] else ''}"
                      for tabs in [getattr(view, "record_tabs", ())] for tab in tabs]
        if getattr(view, "allow_create", False) and may_write(view):
            pages.append(f"{base}new/")
        if pk is not None and getattr(view, "allow_edit", False) and may_write(view):
            pages.append(f"{base}edit/?id={pk}")
    standard = {"index_view", "details_view", "create_view", "edit_view", "export"}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        blueprint, _, name = rule.endpoint.rpartition(".")
        if "GET" not in rule.methods or name in NOT_PAGES or rule.endpoint == "static":
            continue
        if blueprint in model_views and (
            name in standard - {"export"}
            or name == "export"
            and not model_views[blueprint].can_export
        ):
            continue
        values: dict = {}
        query = ""
        if rule.endpoint == "billing.refund":  # the charges to refund are in the query
            charge = db.session.scalar(
                sa.select(Transaction)
                .where(Transaction.kind == TransactionKind.CHARGE)
                .order_by(Transaction.id.desc())
                .limit(1)
            )
            if charge is None:
                continue
            values["customer_id"], query = charge.customer_id, f"?transaction={charge.id}"
        if rule.endpoint == "auth.reset_password":  # a link an admin made for a colleague
            colleague = staff.create_staff(email="reset.me@staff.example.com", name="Reset Me",
                                           role="support", password=staff.generate_password(),
                                           actor=None)
            values["token"] = staff.make_reset_link(colleague, actor=None).token
            db.session.commit()
        for argument in rule.arguments - values.keys():
            if argument in VALUE_FOR:
                values[argument] = VALUE_FOR[argument]
                continue
            assert argument in RECORD_FOR, (
                f"{rule.rule}: say in tests/pages.py RECORD_FOR which table <{argument}> names"
            )
            values[argument] = _first_id(RECORD_FOR[argument])
        if None in values.values():
            continue  # no such record in the data set
        address = rule.build(values, append_unknown=False)
        assert address is not None
        pages.append(address[1] + query)
    return pages
