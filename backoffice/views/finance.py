"""Finance menu: partner transactions and invoices, refunds, reports, monthly invoicing.

- Transactions, transaction lines, invoices and invoice lines are read-only lists.
- A customer's Transactions & Refunds page lists charges and refunds newest first with
  each charge's refundable state; finance select transactions, set how many certificates
  to refund per line, review the amounts of every selected charge and Process Refund
  (the one Review -> Confirm of ``views/review.py``).
- Invoices render as a printable page and download as PDF.
- The transaction report parses its filters with a GET form, totals per currency and
  streams a CSV export.
- Monthly invoices are previewed for a month (the current one: so far), and one
  customer's next invoice on its own page; issuing a finished month is reviewed, then
  confirmed.

The billing pages keep their ``billing`` endpoints and ``/admin/billing/...`` URLs.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from dateutil.relativedelta import relativedelta
from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_admin import expose
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload
from wtforms import Field, SelectChoice, SelectField, StringField
from wtforms.validators import InputRequired, Length, Optional, ValidationError
from wtforms.widgets import HiddenInput, html_params

from .. import invoicing, jobs, partners, refunds, reports
from ..clock import today, utcnow
from ..errors import DomainError
from ..extensions import db
from ..invoice_pdf import Seller, billing_lines, invoice_pdf, period_label
from ..models import (
    Customer,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    JobRun,
    JobStatus,
    Reseller,
    Transaction,
    TransactionKind,
    TransactionLine,
    TransactionReason,
)
from ..permissions import Permission
from .base import (
    DATA_CATEGORY,
    DataTableView,
    ReadOnlyModelView,
    SecureBaseView,
    fmt_money,
    link_formatter,
    money_column,
    name_formatter,
)
from .forms import (
    EARLIEST_DATE,
    LATEST_DATE,
    MAX_ROW_ID,
    ConsoleForm,
    DayField,
    RecordIdsField,
    ReviewForm,
    WholeNumberField,
    quantity_form,
)
from .navigation import came_from, customer_trail, invoice_trail, then
from .paging import RowsPage, SortKey, record_rows
from .review import Operation, review_confirm

CATEGORY = "Finance"

#: transactions on a customer's or a subscription's page: newest first, 50 a page
NEWEST_TRANSACTIONS = SortKey.of("created_at", Transaction.created_at, Transaction.id, True)
#: what those pages show of each transaction, loaded for the page's rows at once
TRANSACTION_LOADS = (
    selectinload(Transaction.lines).selectinload(TransactionLine.certificate_type),
    selectinload(Transaction.invoice),
    selectinload(Transaction.actor),
)


#: the most charges one refund takes at once
MAX_REFUND_CHARGES = 50


class RefundSelectionForm(ConsoleForm):
    """The charges a refund is for: the transactions page's checkboxes, carried along on
    every step. Read first (without CSRF: it changes nothing) to build the refund form."""

    class Meta:
        csrf = False

    transaction = RecordIdsField(
        "Charges", max_entries=MAX_REFUND_CHARGES,
        validators=[InputRequired(message="Select at least one charge to refund.")])


class RefundForm(ReviewForm):
    """A refund of the selected charges; :func:`refund_form` adds a count per charge line."""

    transaction = RefundSelectionForm.transaction


def _count_prefix(charge: Transaction) -> str:
    return f"count_{charge.id}_"


def refund_form(charges: list[Transaction]) -> type[RefundForm]:
    """The refund form for these charges: one count field per charge line, named
    ``count_<transaction>_<CODE>``, each a whole number up to MAX_QUANTITY."""
    form_class: type = RefundForm
    for charge in charges:
        form_class = quantity_form([line.certificate_type for line in charge.lines],
                                   base=form_class, prefix=_count_prefix(charge))
    return form_class


def _count_fields(form: RefundForm, charge: Transaction) -> dict[str, Field]:
    """The count fields of one charge, by certificate code."""
    prefix = _count_prefix(charge)
    return {name[len(prefix):]: field for name, field in form._fields.items()
            if name.startswith(prefix)}


def _counts(form: RefundForm, charge: Transaction) -> dict[str, int]:
    return {code: field.data or 0 for code, field in _count_fields(form, charge).items()}


def _refunded(done: list[Transaction]) -> str:
    total = -sum(t.amount for t in done)
    return (f"Refunded {', '.join(f'{t.refunded_transaction}' for t in done)}: "
            f"{fmt_money(total, done[0].currency)} goes on the "
            "customer's next invoice.")


def transaction_rows(condition, *, url, tab: str | None = None,
                     anchor: str | None = None) -> RowsPage:
    """One page of the transactions matching ``condition`` (a customer's, a
    subscription's), newest first, each with its lines, invoice and actor."""
    return record_rows(select(Transaction).where(condition).options(*TRANSACTION_LOADS),
                       NEWEST_TRANSACTIONS, prefix="transactions", url=url, tab=tab,
                       anchor=anchor)


def refund_states(view, transactions: RowsPage) -> dict[int, refunds.RefundState] | None:
    """Each charge's refund state on this page, for the Refund action of staff who can
    refund (None for the others: the column is not shown)."""
    if not view.can(Permission.REFUND_WRITE):
        return None
    now = utcnow()
    return {t.id: refunds.refund_state(t, now) for t in transactions.rows
            if t.kind == TransactionKind.CHARGE}


def _display_locale() -> str:
    return current_app.config.get("DISPLAY_LOCALE", "en_US")


def _seller() -> Seller:
    """The seller printed on invoices, from SELLER_NAME, SELLER_ADDRESS, SELLER_TAX_ID."""
    config = current_app.config
    return Seller.from_settings(config.get("SELLER_NAME", ""), config.get("SELLER_ADDRESS", ""),
                                config.get("SELLER_TAX_ID", ""))


def customer_transactions_url(customer_id: int) -> str:
    """The Transactions & Refunds page of one customer (for links from other pages)."""
    return url_for("billing.customer_transactions", customer_id=customer_id)


def _actor():
    return current_user._get_current_object()


class BillingView(SecureBaseView):
    """Customer transactions, the refund flow and invoice pages (reached by links)."""

    def is_visible(self) -> bool:
        return False

    @expose("/")
    def index(self):
        return redirect(url_for("transaction_report.index"))

    # ------------------------------------------------------------------ transactions

    @expose(f"/customer/<int(max={MAX_ROW_ID}):customer_id>/transactions")
    def customer_transactions(self, customer_id: int):
        customer = db.get_or_404(Customer, customer_id)
        transactions = transaction_rows(
            Transaction.customer_id == customer.id,
            url=lambda **args: url_for(".customer_transactions", customer_id=customer.id,
                                       **args))
        now = utcnow()
        rows = [(t, refunds.refund_state(t, now)) for t in transactions.rows]
        return self.render("finance/customer_transactions.html", customer=customer, rows=rows,
                           transactions=transactions,
                           can_refund=self.can(Permission.REFUND_WRITE),
                           breadcrumbs=then(customer_trail(customer), "Transactions & Refunds"))

    # ------------------------------------------------------------------ refunds

    @expose(f"/customer/<int(max={MAX_ROW_ID}):customer_id>/refund", methods=("GET", "POST"))
    def refund(self, customer_id: int):
        """Selected charges -> counts per line -> review -> Process Refund (REFUND_WRITE).

        The charges come from the transactions page's checkboxes and are carried along;
        the review covers every selected charge and is confirmed once.
        """
        self.require(Permission.REFUND_WRITE)
        customer = db.get_or_404(Customer, customer_id)
        back = customer_transactions_url(customer.id)
        cancel_url = came_from(back)
        crumbs = then(customer_trail(customer) + [("Transactions & Refunds", back)],
                      "Process refund")
        selection = RefundSelectionForm(
            formdata=request.form if request.method == "POST" else request.args)
        if not selection.validate():
            for error in selection.transaction.errors:
                flash(error, "error")
            return redirect(back, code=303)
        charges = self._selected_charges(customer, selection.transaction.data)
        limits = refunds.refund_limits(charges)
        # Opened from a Refund action or the checkboxes, the counts start at everything
        # that can be refunded; staff lower them for a partial refund. A posted form counts
        # only what it carries.
        opened = {f"{_count_prefix(t)}{code}": count for t in charges
                  for code, count in limits[t.id].items()} if request.method == "GET" else {}
        form = refund_form(charges)(transaction=[t.id for t in charges], **opened)

        def show_form():
            now = utcnow()
            return self.render(
                "finance/refund_counts.html", customer=customer, form=form,
                back_url=cancel_url, breadcrumbs=crumbs, limits=limits,
                charges=[(t, refunds.refund_state(t, now), _count_fields(form, t))
                         for t in charges])

        if not form.validate_on_submit():
            return show_form()
        requests = [(t, _counts(form, t)) for t in charges]
        operation = Operation(
            name="transaction.refund", target=f"customer:{customer.id}",
            review=lambda: refunds.quote_refunds(requests),
            apply=lambda review: refunds.refund_transactions(requests, actor=_actor(),
                                                             reviewed=review),
            landing=lambda _refunds: cancel_url,  # the page the refund was started from
            done=_refunded)

        def show_review(review, token):
            return self.render("finance/refund_review.html", customer=customer, review=review,
                               form=form, token=token, back_url=cancel_url,
                               breadcrumbs=crumbs)

        return review_confirm(operation, form, show_form=show_form, show_review=show_review)

    def _selected_charges(self, customer: Customer, ids: list[int]) -> list[Transaction]:
        """The customer's charges with these ids; 404 if any is missing, another
        customer's or a refund."""
        charges = db.session.scalars(
            select(Transaction).where(Transaction.id.in_(ids)).order_by(Transaction.id)
        ).all()
        if len(charges) != len(ids) or any(
                t.customer_id != customer.id or t.kind != TransactionKind.CHARGE
                for t in charges):
            abort(404)
        return list(charges)

    # ------------------------------------------------------------------ invoices

    @expose(f"/invoice/<int(max={MAX_ROW_ID}):invoice_id>")
    def invoice(self, invoice_id: int):
        invoice = db.get_or_404(Invoice, invoice_id)
        return self.render("finance/invoice.html", invoice=invoice,
                           period=period_label(invoice), seller=_seller(),
                           breadcrumbs=invoice_trail(invoice),
                           bill_to=billing_lines(invoice.billing, _display_locale()))

    @expose(f"/customer/<int(max={MAX_ROW_ID}):customer_id>/next-invoice")
    def next_invoice(self, customer_id: int):
        """The customer's next invoice (or a chosen month's): the issued one, or a preview
        of what issuing will write, laid out as the invoice page, without a number or PDF."""
        customer = db.get_or_404(Customer, customer_id)
        choice = MonthChoiceForm(formdata=request.args)
        context = {"customer": customer, "choice": choice, "seller": _seller(),
                   "breadcrumbs": then(customer_trail(customer), "Next invoice")}
        if not choice.validate():
            return self.render("finance/invoice_preview.html", preview=None, **context), 400
        try:
            preview = invoicing.preview_invoice(customer.id, month=choice.month.data)
        except DomainError as exc:
            flash(str(exc), "error")
            return self.render("finance/invoice_preview.html", preview=None, **context), 400
        bill_to = (billing_lines(preview.draft.billing, _display_locale())
                   if preview.draft else [])
        return self.render("finance/invoice_preview.html", preview=preview, bill_to=bill_to,
                           month_after=preview.month + relativedelta(months=1), **context)

    @expose(f"/invoice/<int(max={MAX_ROW_ID}):invoice_id>.pdf")
    def invoice_pdf(self, invoice_id: int):
        invoice = db.get_or_404(Invoice, invoice_id)
        body = invoice_pdf(invoice, _display_locale(), seller=_seller())
        return Response(body, mimetype="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="{invoice.number}.pdf"'})


#: rows on one page of the report
REPORT_PER_PAGE = 100
#: the report's rows: newest first, by position (the export has every row)
REPORT_ORDER = SortKey.of("created_at", Transaction.created_at, Transaction.id, True)

KIND_CHOICES = [SelectChoice("", "All"), *(SelectChoice(k.value) for k in TransactionKind)]
REASON_CHOICES = [SelectChoice("", "All"), *(SelectChoice(r.value, r.value.replace("_", " "))
                                            for r in TransactionReason)]


def _choose(label: str, what: str, choices=None) -> SelectField:
    message = f"Choose a {what} from the list."
    return SelectField(label, choices=choices or [], default="",
                       invalid_choice_message=message, invalid_value_message=message)


class LookupWidget:
    """A type-ahead box: a hidden input that Flask-Admin's select2 widget (its
    ``admin/js/form.js``, no script of ours) turns into a search asking the field's
    look-up address as staff type; it shows the chosen record's name."""

    def __call__(self, field: LookupField, **kwargs) -> Markup:
        chosen = field.record()
        kwargs.setdefault("id", field.id)
        attributes = {
            "type": "hidden", "name": field.name, "value": field._value(),
            "data-role": "select2-ajax", "data-url": url_for(field.lookup_endpoint),
            "data-allow-blank": "1", "data-minimum-input-length": "1",
            "data-placeholder": f"All {field.what}s",
            "data-json": json.dumps([chosen.id, chosen.company_name] if chosen else None),
            **kwargs}
        return Markup("<input {}>").format(Markup(html_params(**attributes)))


class LookupField(Field):
    """A customer or reseller chosen by type-ahead (see :class:`LookupWidget`): ``data``
    is its id, or None for all. Anything but the id of one of them is a message."""

    widget = LookupWidget()

    def __init__(self, label: str, *, model, what: str, lookup_endpoint: str, **kwargs):
        super().__init__(label, **kwargs)
        self.model, self.what, self.lookup_endpoint = model, what, lookup_endpoint
        self.message = f"Choose a {what} from the list."
        self._record = None

    def process_formdata(self, valuelist):
        self.data = None
        raw = valuelist[0].strip() if valuelist and isinstance(valuelist[0], str) else ""
        if not raw:
            return
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 10
                and 0 < int(raw) <= MAX_ROW_ID):
            raise ValueError(self.message)
        self.data = int(raw)

    def pre_validate(self, form):
        if self.data is not None and self.record() is None:
            raise ValidationError(self.message)

    def record(self):
        """The chosen customer or reseller (one look-up by id), or None."""
        if self.data is not None and (self._record is None or self._record.id != self.data):
            self._record = db.session.get(self.model, self.data)
        return self._record if self.data is not None else None

    def _value(self) -> str:
        return str(self.data) if self.data is not None else ""


class PositionField(StringField):
    """Where the report's page starts: a position token its Newer / Older links carry."""

    def pre_validate(self, form):
        if self.data and REPORT_ORDER.parse(self.data) is None:
            raise ValidationError("This page link is not one the report makes; open the "
                                  "report again from the menu.")


class ReportFilterForm(ConsoleForm):
    """The report's filters, read from the query string (a GET form: it changes nothing).

    Customers and resellers are chosen by type-ahead (a look-up by name, never a list of
    them all); any other value, a date outside 2000-01-01..2099-12-31 or a control
    character is a message on the form.
    """

    class Meta:
        csrf = False

    date_from = DayField("From", validators=[Optional()])
    date_to = DayField("To", validators=[Optional()])
    customer_id = LookupField("Customer", model=Customer, what="customer",
                              lookup_endpoint="transaction_report.lookup_customer")
    reseller_id = LookupField("Reseller", model=Reseller, what="reseller",
                              lookup_endpoint="transaction_report.lookup_reseller")
    kind = _choose("Kind", "kind", KIND_CHOICES)
    reason = _choose("Reason", "reason", REASON_CHOICES)
    after = PositionField("After", widget=HiddenInput())
    before = PositionField("Before", widget=HiddenInput())

    def filters(self) -> reports.ReportFilters:
        """The validated filters; raises the domain's refusal (e.g. start after end)."""
        return reports.ReportFilters(
            date_from=self.date_from.data, date_to=self.date_to.data,
            customer_id=self.customer_id.data, reseller_id=self.reseller_id.data,
            kind=TransactionKind(self.kind.data) if self.kind.data else None,
            reason=TransactionReason(self.reason.data) if self.reason.data else None)

    def show_dates(self, filters: reports.ReportFilters) -> None:
        """Fill the date fields with the range used (the defaults included)."""
        for field, value in ((self.date_from, filters.date_from),
                             (self.date_to, filters.date_to)):
            field.data, field.raw_data = value, None


class LookupQueryForm(ConsoleForm):
    """What a type-ahead asks (select2's ``query``, ``offset`` and ``limit``)."""

    class Meta:
        csrf = False

    query = StringField("Search", validators=[Length(max=200)])
    offset = WholeNumberField("Offset", maximum=1_000)
    limit = WholeNumberField("Limit", minimum=1, maximum=partners.MAX_LOOKUP, blank=10)


class TransactionReportView(SecureBaseView):
    """Transactions filtered by dates (at most a year: the current month unless chosen),
    customer, reseller, kind and reason; totals per currency, pages by position, and a
    CSV export of every matching row."""

    def _read_filters(self, *, bounded: bool
                      ) -> tuple[ReportFilterForm, reports.ReportFilters | None]:
        """The form and its filters (the page's within a year), or None with the form's
        messages when they are bad."""
        form = ReportFilterForm(formdata=request.args)
        if not form.validate():
            return form, None
        try:
            filters = form.filters()
            if bounded:
                filters = reports.within_a_year(filters, today())
                form.show_dates(filters)
            return form, filters
        except DomainError as exc:
            flash(str(exc), "error")
            return form, None

    def _page(self, form: ReportFilterForm, filters: reports.ReportFilters | None):
        """The report page; with bad filters, the form and its messages only (400)."""
        context = {"form": form, "filters": filters, "can_export": self.can(
            Permission.REPORT_EXPORT)}
        if filters is None:
            return self.render("finance/report.html", **context, args={}, totals=[],
                               rows=None), 400
        args = filters.as_args()

        def fetch(condition, order_by, limit, _offset):
            return reports.report_page(filters, where=condition, order_by=order_by,
                                       limit=limit)

        def address(**given) -> str:  # the filters as used (dates filled in), a position
            values: dict[str, Any] = {**args, **{k: v for k, v in given.items()
                                                 if k in ("after", "before")}}
            return url_for(".index", **values)

        rows = record_rows(fetch, REPORT_ORDER, prefix=None, size=REPORT_PER_PAGE,
                           url=address, anchor="report-rows")
        return self.render("finance/report.html", **context, args=args,
                           totals=reports.report_totals(filters), rows=rows)

    @expose("/")
    def index(self):
        return self._page(*self._read_filters(bounded=True))

    @expose("/lookup/customer")
    def lookup_customer(self):
        """The type-ahead of the customer field: ``[[id, company name], ...]``."""
        return self._lookup(Customer)

    @expose("/lookup/reseller")
    def lookup_reseller(self):
        """The type-ahead of the reseller field."""
        return self._lookup(Reseller)

    def _lookup(self, model):
        form = LookupQueryForm(formdata=request.args)
        if not form.validate():
            return jsonify(error="This look-up takes a search of at most 200 characters "
                                 "and a page of at most 20."), 400
        found = partners.find_companies(model, form.query.data or "", offset=form.offset.data,
                                        limit=form.limit.data)
        return jsonify([[ident, name] for ident, name in found])

    @expose("/export.csv")
    def export(self):
        """Every matching row as CSV, streamed: rows are fetched in batches, never all.
        Any date range, every row (the page lists a year at most).

        Bad filters answer 400 with the report page and its messages, before any CSV."""
        self.require(Permission.REPORT_EXPORT)
        form, filters = self._read_filters(bounded=False)
        if filters is None:
            return self._page(form, None)
        chunks = reports.stream_csv(filters)
        filename = f"transactions-{utcnow():%Y%m%d-%H%M%S}.csv"
        return Response(stream_with_context(chunks), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                 "X-Content-Type-Options": "nosniff"})


_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


class MonthField(StringField):
    """A month typed as YYYY-MM (a month input), in the years from EARLIEST_DATE to
    LATEST_DATE; ``data`` is its first day."""

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        text = valuelist[0].strip() if isinstance(valuelist[0], str) else ""
        self.data = None
        if not text:
            return
        match = _MONTH.fullmatch(text)
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ValueError("Enter the month as YYYY-MM, e.g. 2026-11.")
        if not EARLIEST_DATE.year <= int(match.group(1)) <= LATEST_DATE.year:
            raise ValueError(f"Enter a month from {EARLIEST_DATE:%Y-%m} to "
                             f"{LATEST_DATE:%Y-%m}.")
        self.data = date(int(match.group(1)), int(match.group(2)), 1)

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return self.data.strftime("%Y-%m") if self.data else ""


class MonthChoiceForm(ConsoleForm):
    """Which month the page shows (a GET form: it changes nothing)."""

    class Meta:
        csrf = False

    month = MonthField("Month", validators=[Optional()])


class IssueInvoicesForm(ReviewForm):
    """Issue a finished month's invoices, after reviewing them."""

    month = MonthField("Month", widget=HiddenInput(),
                       validators=[InputRequired(message="Choose a month.")])


#: how many customers the monthly invoices preview and review list (the totals cover all)
PREVIEW_ROWS = 100


class MonthlyInvoicesView(SecureBaseView):
    """Preview a month's invoices (the current one: so far) and issue a finished month's
    (what the monthly job does).

    The page lists the first PREVIEW_ROWS customers by id and the totals of all, so it
    costs the same for ten customers or a hundred thousand. A month of more invoices than
    one chunk (INVOICE_CHUNK_SIZE) is not issued inside the request: its Confirm queues
    the monthly invoicing job for that month, which commits a chunk at a time, and the
    page shows the run until it is done.
    """

    @expose("/", methods=("GET", "POST"))
    def index(self):
        if request.method == "POST":
            return self._issue()
        choice = MonthChoiceForm(formdata=request.args)
        if not choice.validate():
            return self._page(None, choice), 400
        return self._page(choice.month.data or _previous_month(), choice)

    def _page(self, month: date | None, choice: MonthChoiceForm,
              form: IssueInvoicesForm | None = None):
        """The month's preview and issued invoices; only the month chooser without one."""
        pending: list = []
        summary = None
        issued: list = []
        issued_count = 0
        not_over = None
        if month is not None:
            try:
                pending = invoicing.pending_monthly_invoices(month=month, limit=PREVIEW_ROWS)
                summary = invoicing.pending_summary(month=month)
                invoicing.check_issuable(month)
            except DomainError as exc:
                if summary is None:
                    flash(str(exc), "error")
                else:  # the current month: its preview so far, and when it can be issued
                    not_over = str(exc)
            of_month = (Invoice.kind == InvoiceKind.MONTHLY, Invoice.period_start == month)
            issued = list(db.session.scalars(
                select(Invoice).where(*of_month).options(joinedload(Invoice.customer))
                .order_by(Invoice.number).limit(PREVIEW_ROWS)
            ))
            issued_count = db.session.scalar(
                select(func.count(Invoice.id)).where(*of_month)) or 0
            if form is None:
                form = IssueInvoicesForm(month=month)
        return self.render("finance/monthly_invoices.html", month=month, choice=choice,
                           form=form, pending=pending, summary=summary, issued=issued,
                           issued_count=issued_count, preview_rows=PREVIEW_ROWS,
                           not_over=not_over,
                           **_month_runs(month), runner_alive=jobs.runner_alive(),
                           can_issue=self.can(Permission.INVOICE_WRITE))

    def _issue(self):
        """Review, then Confirm, the issue of one finished month's invoices."""
        self.require(Permission.INVOICE_WRITE)
        form = IssueInvoicesForm()
        if not form.validate_on_submit():
            for field in form:
                for error in field.errors:
                    flash(error, "error")
            return self._page(None, MonthChoiceForm(formdata=None)), 400
        month = form.month.data
        if month is None:
            flash("Choose the month to issue, as YYYY-MM (e.g. 2026-11).", "error")
            return self._page(None, MonthChoiceForm(formdata=None)), 400
        page_url = url_for(".index", month=f"{month:%Y-%m}")

        def show_form():
            return self._page(month, MonthChoiceForm(formdata=None, month=month), form)

        def show_review(review, token):
            return self.render("finance/monthly_invoices_review.html", review=review,
                               form=form, token=token, back_url=page_url,
                               preview_rows=PREVIEW_ROWS,
                               chunk_size=jobs.invoice_chunk_size())

        operation = Operation(
            name="invoice.issue_monthly", target=f"month:{month:%Y-%m}",
            review=lambda: invoicing.review_monthly_invoices(
                month=month, limit=jobs.invoice_chunk_size()),
            apply=lambda review: _issue_or_queue(month, review),
            landing=lambda _issued: page_url,
            done=lambda issued: _issued_message(month, issued))
        return review_confirm(operation, form, show_form=show_form, show_review=show_review)


def _issue_or_queue(month: date, review: invoicing.MonthlyInvoicesReview):
    """Issue a reviewed month of at most one chunk of invoices in this request's
    transaction; hand a larger one to the job runner (a run of the monthly invoicing job
    for that month, which commits a chunk at a time), so that no request holds a hundred
    thousand invoices in one transaction. Returns the invoices, or the queued run."""
    if review.whole:
        return invoicing.issue_monthly_invoices(month=month, actor=_actor(), reviewed=review)
    return jobs.request_run(jobs.MONTHLY_INVOICES, staff=_actor(),
                            arguments={"month": f"{month:%Y-%m}"})


def _issued_message(month: date, result) -> str:
    if isinstance(result, JobRun):
        return (f"The job runner is issuing the invoices for {month:%B %Y}, "
                f"{jobs.invoice_chunk_size():,} at a time; this page "
                "counts them as they are issued.")
    return f"Issued {len(result)} invoice{'s' if len(result) != 1 else ''} for {month:%B %Y}."


#: how many of the monthly invoicing job's latest runs the page looks through for its month
RECENT_RUNS = 20


def _month_runs(month: date | None) -> dict[str, JobRun | None]:
    """The latest run of the monthly invoicing job asked for ``month`` (by the page):
    ``issuing_run`` while it is queued or running, ``failed_run`` if it failed."""
    latest = None
    if month is not None:
        latest = next((run for run in db.session.scalars(
            select(JobRun).where(JobRun.job == jobs.MONTHLY_INVOICES)
            .order_by(JobRun.id.desc()).limit(RECENT_RUNS))
            if (run.arguments or {}).get("month") == f"{month:%Y-%m}"), None)
    status = latest.status if latest is not None else None
    return {"issuing_run": latest if status in (JobStatus.QUEUED, JobStatus.RUNNING) else None,
            "failed_run": latest if status == JobStatus.FAILED else None}


def _previous_month() -> date:
    return today().replace(day=1) - relativedelta(months=1)


# --------------------------------------------------------------------------- lists


class TransactionView(ReadOnlyModelView):
    column_list = ("id", "created_at", "customer", "subscription", "kind", "reason", "amount",
                   "currency", "invoice", "actor")
    column_details_list = ("id", "created_at", "customer", "subscription", "kind", "reason",
                           "refunded_transaction", "amount", "currency", "lines", "invoice",
                           "actor")
    column_filters = ("kind", "reason", "currency", "created_at", "customer.company_name")
    column_searchable_list = ("customer.company_name",)
    column_sortable_list = ("id", "created_at")
    column_default_sort = ("created_at", True)
    column_list_loads = ("subscription.product",)
    column_formatters = {
        "id": name_formatter("transaction"),
        "amount": money_column(),
        "customer": link_formatter("customer"),
        "subscription": link_formatter("subscription"),
        "invoice": link_formatter("invoice"),
        "refunded_transaction": link_formatter("transaction"),
        "lines": lambda v, c, m, n: "; ".join(
            f"{line.certificate_type.code} x {line.quantity}" for line in m.lines
        ),
    }


class TransactionLineView(DataTableView):
    column_list = ("id", "transaction", "certificate_type", "quantity", "full_amount",
                   "days_charged", "days_in_term", "amount", "refunded_quantity",
                   "refunded_amount")
    column_filters = ("certificate_type.code",)
    column_formatters = {
        "transaction": link_formatter("transaction"),
        "amount": money_column("transaction.currency"),
        "full_amount": money_column("transaction.currency"),
        "refunded_amount": money_column("transaction.currency"),
    }


def _printable_invoice_link(_view, _context, model, _name):
    """The invoice number, linking to its printable page (with the PDF download)."""
    url = url_for("billing.invoice", invoice_id=model.id)
    return Markup('<a href="{}">{}</a>').format(url, model.number)


class InvoiceView(ReadOnlyModelView):
    column_list = ("number", "kind", "order", "customer", "period_start", "currency", "total",
                   "issued_at")
    column_details_list = ("number", "kind", "order", "customer", "period_start", "billing",
                           "currency", "total", "lines", "issued_at")
    column_searchable_list = ("number",)
    column_exact_search = ("number",)
    column_filters = ("kind", "currency", "issued_at", "period_start")
    column_sortable_list = ("number", "issued_at")
    column_default_sort = ("issued_at", True)
    column_formatters = {
        "number": _printable_invoice_link,
        "total": money_column(),
        "order": link_formatter("order"),
        "customer": link_formatter("customer"),
        "lines": lambda v, c, m, n: "; ".join(
            f"{line.description} x {line.quantity}" for line in m.lines
        ),
    }


class InvoiceLineView(DataTableView):
    column_list = ("id", "invoice", "position", "description", "quantity", "amount")
    column_searchable_list = ("description",)
    column_formatters = {
        "invoice": link_formatter("invoice"),
        "amount": money_column("invoice.currency"),
    }


def register(admin, db) -> None:
    """Add the Finance menu to the console."""
    admin.add_view(TransactionView(Transaction, db, name="Transactions", category=CATEGORY))
    admin.add_view(TransactionLineView(TransactionLine, db, name="Transaction lines",
                                       category=DATA_CATEGORY))
    admin.add_view(InvoiceView(Invoice, db, name="Invoices", category=CATEGORY))
    admin.add_view(InvoiceLineView(InvoiceLine, db, name="Invoice lines", category=DATA_CATEGORY))
    admin.add_view(BillingView(name="Billing", endpoint="billing", url="/admin/billing"))
    admin.add_view(TransactionReportView(name="Transaction report", category=CATEGORY,
                                         endpoint="transaction_report",
                                         url="/admin/billing/report"))
    admin.add_view(MonthlyInvoicesView(name="Monthly invoices", category=CATEGORY,
                                       endpoint="monthly_invoices",
                                       url="/admin/billing/monthly-invoices"))
