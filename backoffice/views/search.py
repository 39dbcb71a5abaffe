"""The global search page: the top bar's search box on every page lands here."""

from __future__ import annotations

from flask import redirect, request, url_for
from flask_admin import expose
from wtforms import SearchField
from wtforms.validators import Length

from .. import search
from .base import SecureBaseView
from .forms import ConsoleForm

#: where each kind of hit opens: (endpoint, the id's argument name)
RECORD_PAGES = {
    "profile": ("profile.details_view", "id"),
    "organization": ("organization.details_view", "id"),
    "customer": ("customer.details_view", "id"),
    "reseller": ("reseller.details_view", "id"),
    "order": ("order.details_view", "id"),
    "invoice": ("billing.invoice", "invoice_id"),
    "license": ("license.details_view", "id"),
    "transaction": ("transaction.details_view", "id"),
}


def record_url(hit: search.Hit) -> str:
    """The page of the record a hit names."""
    endpoint, argument = RECORD_PAGES[hit.kind]
    arguments: dict = {argument: hit.id}
    return url_for(endpoint, **arguments)


class SearchForm(ConsoleForm):
    """The search box (a GET form: it changes nothing)."""

    class Meta:
        csrf = False

    q = SearchField("Search", validators=[Length(
        max=search.MAX_QUERY, message=f"Search for at most {search.MAX_QUERY} characters.")])


class SearchView(SecureBaseView):
    """One query over profiles, organizations, customers, resellers, orders, invoices,
    licences and transactions; a whole email, number or reference opens its record."""

    def is_visible(self) -> bool:
        return False  # reached from the search box in the top bar, not the menu

    @expose("/")
    def index(self):
        form = SearchForm(formdata=request.args)
        results = None
        if form.q.data and form.validate():
            results = search.search(form.q.data)
            if results.exact is not None and request.args.get("all") != "1":
                return redirect(record_url(results.exact), code=303)
        return self.render("search/results.html", form=form, results=results,
                           titles=search.KIND_TITLES, record_url=record_url,
                           min_fragment=search.MIN_FRAGMENT)


def register(admin) -> None:
    """Add the search page (no menu entry)."""
    admin.add_view(SearchView(name="Search", endpoint="search", url="/admin/search"))
