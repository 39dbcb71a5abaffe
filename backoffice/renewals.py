"""Scheduled renewal of partner subscriptions (DESIGN.md, "Renewal (scheduled)").

``renew_due_subscriptions`` is the job body. The database decides what is due, so a
missed, late, repeated or concurrent run does no harm:

- due subscriptions are taken in chunks (``CHUNK_SIZE``, by id), each chunk in its own
  transaction: lock its rows, work out every term, charge and event in memory, write them
  with a few set-based statements, commit. A crash rolls back the chunk it was in and
  nothing else; the next run carries on from what is still due;
- after downtime a subscription is renewed term by term from its own end date until its
  end is after today, each term with its own full-term charge dated on its renewal day;
- the UNIQUE (subscription, start date) constraint on ``SubscriptionTerm`` backs the lock:
  if another process created a term first, the chunk rolls back and its subscriptions are
  done again one by one, where that one counts as skipped;
- likewise a chunk that fails for any other reason is done again one by one, so one
  failing subscription rolls back alone and the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache, partial
from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from . import audit, clock, outbox
from .bulk import id_in, insert_rows
from .extensions import db
from .models import (
    CertificateType,
    Customer,
    Inventory,
    OutboxEmail,
    Reseller,
    ResellerStatus,
    Subscription,
    SubscriptionStatus,
    SubscriptionTerm,
    Transaction,
    TransactionKind,
    TransactionLine,
    TransactionReason,
)
from .pricing import QuoteLine, price_line, term_end

log = logging.getLogger(__name__)

#: how the job signs its audit events
ACTOR_LABEL = "job:renewals"

#: statuses a subscription can leave by renewing or expiring
_OPEN_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.SUSPENDED)

#: subscriptions renewed in one transaction (the job's ``RENEWAL_CHUNK_SIZE``)
CHUNK_SIZE = 1000


def _due(as_of: date) -> tuple:
    return (Subscription.status.in_(_OPEN_STATUSES), Subscription.end_date <= as_of)


def renew_due_subscriptions(*, today: date | None = None,
                            progress: Callable[[int, int], None] | None = None,
                            chunk_size: int = CHUNK_SIZE) -> dict:
    """Renew or expire every subscription whose term has ended; commits chunk by chunk.

    Returns counts: renewed, expired, skipped (someone else got there first or it is no
    longer due), failed (rolled back, retried on the next run) and terms_created.
    ``progress(done, total)``, when given, is called for each subscription as its chunk
    commits.
    """
    as_of = today or clock.today()
    run = _Run(as_of, progress, db.session.scalar(
        select(func.count()).select_from(Subscription).where(*_due(as_of))) or 0)
    db.session.rollback()  # each chunk takes its own transaction
    # First pass: leave rows another process holds right now (it is most likely renewing
    # them) and come back to them in a second pass that waits for their locks. Processes
    # running at once thus share the work instead of queueing behind the same rows.
    for wait in (False, True):
        after = 0
        while chunk := _lock_due(as_of, after=after, limit=chunk_size, wait=wait):
            after = chunk[-1].id
            run.chunk(chunk)
        db.session.rollback()
    run.finish()
    return run.counts


@dataclass
class _Term:
    """One term to create: its dates and its priced lines (inventory row, line)."""

    start: date
    end: date
    lines: list[tuple[_InventoryRow, QuoteLine]]
    #: the id of its charge, once written
    charge_id: int | None = None


@dataclass
class _Due:
    """A locked due subscription, as a chunk reads it and plans its terms."""

    id: int
    customer_id: int
    term_months: int
    start_date: date
    end_date: date
    auto_renew: bool
    status: SubscriptionStatus
    currency: str
    reseller_status: ResellerStatus | None
    #: the end date when it was read (what an expiry records)
    ended_on: date = field(init=False)
    terms: list[_Term] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ended_on = self.end_date


class _InventoryRow(NamedTuple):
    """A locked inventory row and its certificate type."""

    id: int
    subscription_id: int
    certificate_type: CertificateType
    renewal_quantity: int


class _Run:
    """One run's counts and progress, and what it must not take up again."""

    def __init__(self, as_of: date, progress: Callable[[int, int], None] | None, total: int):
        self.as_of, self.progress, self.total = as_of, progress, total
        self.counts = {"renewed": 0, "expired": 0, "skipped": 0, "failed": 0,
                       "terms_created": 0}
        self.done = 0
        #: handled by this run but still due (failed, or its term was already there)
        self.settled: set[int] = set()

    def chunk(self, chunk: list[_Due]) -> None:
        """Do one locked chunk and commit it; on any failure redo it one by one."""
        todo = [due for due in chunk if due.id not in self.settled]
        if not todo:
            db.session.rollback()
            return
        try:
            outcomes = _process(todo, self.as_of)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            failure = exc.__class__.__name__
        else:
            for outcome, terms in outcomes:
                self.tally(outcome, terms)
            return
        if len(todo) > 1:
            log.warning("renewal chunk of %s subscriptions (ids %s-%s) rolled back (%s); "
                        "doing them one by one", len(todo), todo[0].id, todo[-1].id, failure)
        for due in todo:
            self.item(due.id)

    def item(self, subscription_id: int) -> None:
        """One subscription in its own transaction (after its chunk failed)."""
        try:
            chunk = _lock_due(self.as_of, only=subscription_id, wait=True)
            if not chunk:  # renewed or expired by someone else meanwhile
                db.session.rollback()
                self.tally("skipped")
                return
            [(outcome, terms)] = _process(chunk, self.as_of)
            db.session.commit()
        except IntegrityError:
            # The term already exists: another process renewed it between our checks.
            db.session.rollback()
            self.settled.add(subscription_id)
            self.tally("skipped")
        except Exception:  # one bad subscription must not stop the others
            db.session.rollback()
            log.exception("renewal of subscription %s failed", subscription_id)
            self.settled.add(subscription_id)
            self.tally("failed")
        else:
            self.tally(outcome, terms)

    def tally(self, outcome: str, terms: int = 0) -> None:
        self.counts[outcome] += 1
        self.counts["terms_created"] += terms
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, max(self.total, self.done))

    def finish(self) -> None:
        """Count what was due when the run began but another process renewed or expired."""
        for _ in range(self.total - self.done):
            self.tally("skipped")


def _lock_due(as_of: date, *, after: int = 0, limit: int = 1, wait: bool,
              only: int | None = None) -> list[_Due]:
    """Lock the next ``limit`` due subscriptions with ids above ``after``, in id order
    (or just subscription ``only``, if it is due).

    SELECT ... FOR UPDATE OF subscription: with ``wait`` false, SKIP LOCKED (rows another
    process holds are left for the second pass); with it, the rows are waited for and
    re-checked once their holder commits. SQLite has no row locks: its job transactions
    begin with ``BEGIN IMMEDIATE`` and so hold the only write lock.
    """
    query = (
        select(Subscription.id, Subscription.customer_id, Subscription.term_months,
               Subscription.start_date, Subscription.end_date, Subscription.auto_renew,
               Subscription.status, Customer.currency, Reseller.status)
        .join(Customer, Customer.id == Subscription.customer_id)
        .outerjoin(Reseller, Reseller.id == Customer.reseller_id)
        .where(*_due(as_of), Subscription.id > after)
        .order_by(Subscription.id).limit(limit)
        .with_for_update(skip_locked=not wait, of=Subscription)
    )
    if only is not None:
        query = query.where(Subscription.id == only)
    return [_Due(*row) for row in db.session.execute(query)]


def _locked_inventory(ids: Sequence[int]) -> dict[int, list[_InventoryRow]]:
    """The chunk's inventory rows, locked, by subscription (in id order)."""
    rows = db.session.execute(
        select(Inventory.id, Inventory.subscription_id, Inventory.certificate_type_id,
               Inventory.renewal_quantity)
        .where(id_in(Inventory.subscription_id, ids))
        .order_by(Inventory.subscription_id, Inventory.id)
        .with_for_update()
    ).all()
    types = {cert.id: cert for cert in db.session.scalars(
        select(CertificateType).where(CertificateType.id.in_({row[2] for row in rows}))
        .execution_options(populate_existing=True))}  # the catalog: a handful of types
    by_subscription: dict[int, list[_InventoryRow]] = {}
    for row_id, subscription_id, type_id, renewal_quantity in rows:
        by_subscription.setdefault(subscription_id, []).append(
            _InventoryRow(row_id, subscription_id, types[type_id], renewal_quantity))
    return by_subscription


def _block_reason(status: SubscriptionStatus, auto_renew: bool,
                  reseller_status: Callable[[], ResellerStatus | None],
                  renewal_total: Callable[[], int]) -> str | None:
    """The rule of :func:`renewal_blocker`, on plain values; the reseller's status and the
    renewal inventory's total are asked for only when the checks get that far."""
    if status == SubscriptionStatus.SUSPENDED:
        return "suspended"
    if status != SubscriptionStatus.ACTIVE:
        return status.value
    if not auto_renew:
        return "auto-renew off"
    if reseller_status() == ResellerStatus.DISABLED:
        return "reseller disabled"
    if renewal_total() <= 0:
        return "renewal inventory is zero"
    return None


def renewal_blocker(subscription: Subscription, rows: list[Inventory] | None = None, *,
                    renewal_total: int | None = None) -> str | None:
    """Why this subscription will not renew at its end date, or None when it will.

    ``rows`` are its (locked) inventory rows; its ``inventory`` relationship otherwise.
    ``renewal_total``, when given, stands for the rows' total renewal inventory (a review
    of new renewal quantities asks with the quantities it would set).
    """
    def total() -> int:
        if renewal_total is not None:
            return renewal_total
        return sum(row.renewal_quantity
                   for row in (subscription.inventory if rows is None else rows))

    def reseller_status() -> ResellerStatus | None:
        reseller = subscription.customer.reseller
        return reseller.status if reseller is not None else None

    return _block_reason(subscription.status, subscription.auto_renew, reseller_status,
                         total)


def _process(chunk: list[_Due], as_of: date) -> list[tuple[str, int]]:
    """Renew or expire a chunk of locked due subscriptions inside the current transaction.

    Every term, charge, line and event is worked out first, then written with a fixed
    number of statements whatever the chunk's size. Returns (outcome, terms created) for
    each subscription, in order.
    """
    inventory = _locked_inventory([due.id for due in chunk])
    outcomes: list[tuple[str, int]] = []
    expired: list[tuple[_Due, str]] = []
    renewing: list[_Due] = []
    for due in chunk:
        rows = inventory.get(due.id, [])
        blocker = _block_reason(
            due.status, due.auto_renew, partial(getattr, due, "reseller_status"),
            partial(sum, [row.renewal_quantity for row in rows]))
        if blocker is not None:
            expired.append((due, blocker))
            outcomes.append(("expired", 0))
            continue
        while due.end_date <= as_of:
            _renew_one_term(due, rows)
        renewing.append(due)
        outcomes.append(("renewed", len(due.terms)))
    _write(expired, renewing)
    # Events last: the audit counter stays locked only for their insert and the commit.
    blockers = {due.id: blocker for due, blocker in expired}
    entries = []
    for due in chunk:
        if due.id in blockers:
            entries.append(audit.Entry("subscription.expire", "Subscription", str(due.id),
                                       {"end_date": due.ended_on, "reason": blockers[due.id]}))
            continue
        for term in due.terms:
            lines = [line for _row, line in term.lines]
            entries.append(audit.Entry("subscription.renew", "Subscription", str(due.id), {
                "start_date": term.start, "end_date": term.end,
                "transaction_id": term.charge_id,
                "total": sum(line.amount for line in lines), "currency": due.currency,
                "lines": {line.code: {"quantity": line.quantity, "amount": line.amount}
                          for line in lines}}))
    audit.record_many(None, entries, actor_label=ACTOR_LABEL)
    return outcomes


def _renew_one_term(subscription: _Due, rows: list[_InventoryRow]) -> None:
    """Plan the next term from the old end date: its dates and its full-term lines."""
    start = subscription.end_date
    end = _term_end(start, subscription.term_months)
    subscription.terms.append(_Term(start, end, [
        (row, _full_term_price(row.certificate_type, row.renewal_quantity,
                               subscription.term_months, start, end))
        for row in rows if row.renewal_quantity > 0
    ]))
    subscription.start_date, subscription.end_date = start, end


@lru_cache(maxsize=4096)
def _term_end(start: date, term_months: int) -> date:
    return term_end(start, term_months)


def _full_term_price(cert_type: CertificateType, quantity: int, term_months: int,
                     start: date, end: date) -> QuoteLine:
    """``price_line`` for a whole term. The same type, quantity and dates recur across a
    chunk, so each is priced once (by value: a changed price is priced anew)."""
    return _priced(cert_type.code, cert_type.name, cert_type.yearly_price, quantity,
                   term_months, start, end)


class _Type(NamedTuple):
    code: str
    name: str
    yearly_price: int


@lru_cache(maxsize=65536)
def _priced(code: str, name: str, yearly_price: int, quantity: int, term_months: int,
            start: date, end: date) -> QuoteLine:
    return price_line(_Type(code, name, yearly_price), quantity, term_months=term_months,
                      start_date=start, end_date=end, as_of=start)


def _write(expired: list[tuple[_Due, str]], renewing: list[_Due]) -> None:
    """Write a chunk's expiries and renewals; each term learns its charge's id.

    A duplicate term fails the terms' INSERT and the whole chunk rolls back.
    """
    unsynced = {"synchronize_session": False}  # the chunk's rows are not in the session
    if expired:
        db.session.execute(
            update(Subscription).where(id_in(Subscription.id, [due.id for due, _ in expired]))
            .values(status=SubscriptionStatus.EXPIRED).execution_options(**unsynced))
    terms = [(due, term) for due in renewing for term in due.terms]
    if not terms:
        return
    now = clock.utcnow()
    insert_rows(SubscriptionTerm, [
        {"subscription_id": due.id, "start_date": term.start, "end_date": term.end,
         "created_at": now} for due, term in terms])
    charge_ids = insert_rows(Transaction, [
        {"customer_id": due.customer_id, "subscription_id": due.id,
         "kind": TransactionKind.CHARGE, "reason": TransactionReason.RENEWAL,
         "amount": sum(line.amount for _row, line in term.lines),
         "currency": due.currency, "actor_id": None,
         "created_at": datetime.combine(term.start, time(0), tzinfo=UTC)}
        for due, term in terms], key=("subscription_id", "created_at"))
    for charge_id, (_due, term) in zip(charge_ids, terms, strict=True):
        term.charge_id = charge_id
    insert_rows(TransactionLine, [
        {"transaction_id": term.charge_id, "certificate_type_id": row.certificate_type.id,
         "quantity": line.quantity, "amount": line.amount, "full_amount": line.full_amount,
         "days_charged": line.days_charged, "days_in_term": line.days_in_term,
         "refunded_quantity": 0, "refunded_amount": 0}
        for _due, term in terms for row, line in term.lines])
    renewed = [due.id for due in renewing]
    # Current inventory := renewal inventory; each subscription moves to its last term,
    # the one with the latest start just written (terms never overlap).
    db.session.execute(
        update(Inventory).where(id_in(Inventory.subscription_id, renewed),
                                Inventory.quantity != Inventory.renewal_quantity)
        .values(quantity=Inventory.renewal_quantity).execution_options(**unsynced))
    latest = (
        select(SubscriptionTerm.subscription_id,
               func.max(SubscriptionTerm.start_date).label("start_date"),
               func.max(SubscriptionTerm.end_date).label("end_date"))
        .where(id_in(SubscriptionTerm.subscription_id, renewed))
        .group_by(SubscriptionTerm.subscription_id).subquery())
    db.session.execute(
        update(Subscription).where(Subscription.id == latest.c.subscription_id)
        .values(start_date=latest.c.start_date, end_date=latest.c.end_date)
        .execution_options(**unsynced))


# --------------------------------------------------------------------------- notices


#: how long before an auto-renewal the customer is told about it
RENEWAL_NOTICE_DAYS = 30


def renewal_notice_subject(subscription: Subscription) -> str:
    """The notice's subject; it names the subscription and its term end, once per term.

    The subject is also the marker that the notice for this term was queued: a queued or
    sent outbox message with exactly this subject means the notice is not queued again.
    """
    return (f"Subscription #{subscription.id} renews automatically on "
            f"{subscription.end_date.isoformat()}")


def queue_renewal_notices(*, as_of: date | None = None) -> dict:
    """Queue an email to the customer admin 30 days before each auto-renewal, once per term.

    Each subscription is handled in its own transaction under its row lock, so two runs
    at once still queue one notice. Subscriptions that will not renew get no notice.
    """
    as_of = as_of or clock.today()
    ids = db.session.scalars(
        select(Subscription.id)
        .where(Subscription.status == SubscriptionStatus.ACTIVE,
               Subscription.auto_renew.is_(True),
               Subscription.end_date > as_of,
               Subscription.end_date <= as_of + timedelta(days=RENEWAL_NOTICE_DAYS))
        .order_by(Subscription.id)
    ).all()
    db.session.rollback()
    counts = {"queued": 0, "already_queued": 0, "no_email": 0, "not_renewing": 0,
              "failed": 0}
    for subscription_id in ids:
        try:
            outcome = _queue_notice(subscription_id, as_of)
            db.session.commit()
        except Exception:  # one bad subscription must not stop the others
            db.session.rollback()
            log.exception("renewal notice for subscription %s failed", subscription_id)
            outcome = "failed"
        counts[outcome] += 1
    return counts


def _queue_notice(subscription_id: int, as_of: date) -> str:
    """Queue one subscription's notice in the current transaction; returns what happened."""
    subscription = db.session.get(Subscription, subscription_id, with_for_update=True,
                                  populate_existing=True)
    if (subscription is None or renewal_blocker(subscription) is not None
            or subscription.end_date <= as_of):
        return "not_renewing"
    subject = renewal_notice_subject(subscription)
    if db.session.scalar(select(OutboxEmail.id).where(OutboxEmail.subject == subject)):
        return "already_queued"
    customer = subscription.customer
    if not customer.customer_admin_email:
        return "no_email"
    holding = "\n".join(
        f"  {row.certificate_type.code}: {row.renewal_quantity}"
        for row in subscription.inventory if row.renewal_quantity > 0
    )
    body = (
        f"Hello,\n\nSubscription #{subscription.id} ({subscription.product.name}) of "
        f"{customer.company_name} renews automatically on "
        f"{subscription.end_date.isoformat()} for another {subscription.term_months} "
        f"months, with:\n{holding}\n\nThe full-term charge will appear on your next "
        f"invoice. To change the renewal inventory or stop the renewal, contact us before "
        f"that date.\n"
    )
    message = outbox.queue(to=customer.customer_admin_email, subject=subject, body=body)
    audit.record(None, "subscription.renewal_notice", subscription,
                 {"term_end": subscription.end_date, "to": message.to,
                  "outbox_email_id": message.id}, actor_label="job:renewal_notices")
    return "queued"
