"""Flask-Admin views, one module per menu (Accounts, Partners, Finance, Catalog, System).

:func:`init_admin` builds the console; ``login`` holds the sign-in pages.
"""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from ..extensions import db
from . import accounts, catalog, finance, login, partners, search, system
from .base import DATA_CATEGORY, ConsoleIndexView
from .forms import quantity_fields
from .security import csp_nonce


def init_admin(app: Flask) -> Admin:
    """Build the console for ``app``: a fresh Admin per app, never a module-level one."""
    admin = Admin(
        app,
        name="Back-office",
        theme=Bootstrap4Theme(base_template="backoffice_base.html", fluid=True),
        index_view=ConsoleIndexView(name="Dashboard", url="/admin"),
        csp_nonce_generator=csp_nonce,
    )
    app.jinja_env.filters["quantity_fields"] = quantity_fields
    app.jinja_env.globals["logout_form"] = login.LogoutForm
    # The menus in working order; the admin-only Data menu of raw tables comes last.
    for category in (accounts.CATEGORY, partners.CATEGORY, finance.CATEGORY, catalog.CATEGORY,
                     system.CATEGORY, DATA_CATEGORY):
        admin.add_category(category)
    accounts.register(admin, db)
    partners.register(admin, db)
    finance.register(admin, db)
    catalog.register(admin, db)
    system.register(admin, db)
    search.register(admin)
    return admin
