"""Scheduled renewal of partner subscriptions (DESIGN.md, "Renewal (scheduled)").

``renew_due_subscriptions`` is the job body. The database decides what is due, so a
missed, late, repeated or concurrent run does no harm:

- due ids are read first, then each subscription is handled in its own transaction:
  lock its row, re-check that it is still due, do the work, commit;
- after downtime a subscription is renewed term by term from its own end date until its
  end is after today, each term with its own full-term charge dated on its renewal day;
- the UNIQUE (subscription, start date) constraint on ``SubscriptionTerm`` backs the lock:
  if another process created the term first, this item rolls back and counts as skipped;
- one failing subscription rolls back alone and the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from . import audit, clock, outbox
from .extensions import db
from .models import (
    Inventory,
    OutboxEmail,
    ResellerStatus,
    Subscription,
    SubscriptionStatus,
    SubscriptionTerm,
    Transaction,
    TransactionKind,
    TransactionLine,
    TransactionReason,
)
from .pricing import price_line, term_end

log = logging.getLogger(__name__)

#: how the job signs its audit events
ACTOR_LABEL = "job:renewals"

#: statuses a subscription can leave by renewing or expiring
_OPEN_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.SUSPENDED)


def renew_due_subscriptions(*, today: date | None = None,
                            progress: Callable[[int, int], None] | None = None) -> dict:
    """Renew or expire every subscription whose term has ended; commits each one.

    Returns counts: renewed, expired, skipped (someone else got there first or it is no
    longer due), failed (rolled back, retried on the next run) and terms_created.
    ``progress(done, total)``, when given, is called after each subscription.
    """
    as_of = today or clock.today()
    counts = {"renewed": 0, "expired": 0, "skipped": 0, "failed": 0, "terms_created": 0}
    due_ids = db.session.scalars(
        select(Subscription.id)
        .where(Subscription.status.in_(_OPEN_STATUSES), Subscription.end_date <= as_of)
        .order_by(Subscription.end_date, Subscription.id)
    ).all()
    db.session.rollback()  # each item takes its own transaction
    # First pass: leave rows another process holds right now (it is most likely renewing
    # them) and come back to them at the end, waiting for the lock then. Processes running
    # at once thus share the work instead of queueing behind the same row.
    busy = []
    done = 0
    for subscription_id in due_ids:
        if not _run_item(subscription_id, as_of, counts, wait=False):
            busy.append(subscription_id)
            continue
        done += 1
        if progress is not None:
            progress(done, len(due_ids))
    for subscription_id in busy:
        _run_item(subscription_id, as_of, counts, wait=True)
        done += 1
        if progress is not None:
            progress(done, len(due_ids))
    return counts


def _run_item(subscription_id: int, as_of: date, counts: dict, *, wait: bool) -> bool:
    """One subscription as its own unit of work: commit, or roll back and count why.

    Returns False, having done nothing, when ``wait`` is false and the row is locked.
    """
    try:
        outcome, terms = _process(subscription_id, as_of, wait=wait)
        if outcome == "busy":
            db.session.rollback()
            return False
        db.session.commit()
    except IntegrityError:
        # The term already exists: another process renewed it between our checks.
        db.session.rollback()
        counts["skipped"] += 1
    except Exception:  # one bad subscription must not stop the others
        db.session.rollback()
        log.exception("renewal of subscription %s failed", subscription_id)
        counts["failed"] += 1
    else:
        counts[outcome] += 1
        counts["terms_created"] += terms
    return True


def renewal_blocker(subscription: Subscription, rows: list[Inventory] | None = None, *,
                    renewal_total: int | None = None) -> str | None:
    """Why this subscription will not renew at its end date, or None when it will.

    ``rows`` are its (locked) inventory rows; its ``inventory`` relationship otherwise.
    ``renewal_total``, when given, stands for the rows' total renewal inventory (a review
    of new renewal quantities asks with the quantities it would set).
    """
    if subscription.status == SubscriptionStatus.SUSPENDED:
        return "suspended"
    if subscription.status != SubscriptionStatus.ACTIVE:
        return subscription.status.value
    if not subscription.auto_renew:
        return "auto-renew off"
    reseller = subscription.customer.reseller
    if reseller is not None and reseller.status == ResellerStatus.DISABLED:
        return "reseller disabled"
    if renewal_total is None:
        rows = subscription.inventory if rows is None else rows
        renewal_total = sum(row.renewal_quantity for row in rows)
    if renewal_total <= 0:
        return "renewal inventory is zero"
    return None


def _process(subscription_id: int, as_of: date, *, wait: bool = True) -> tuple[str, int]:
    """Renew or expire one subscription inside the current transaction.

    Locks the subscription row (SELECT ... FOR UPDATE; without ``wait``, SKIP LOCKED, and
    "busy" when someone else holds it), then re-checks that it is still due.
    """
    subscription = db.session.get(
        Subscription, subscription_id, populate_existing=True,
        options=[joinedload(Subscription.customer, innerjoin=True)],
        with_for_update={"skip_locked": not wait, "of": Subscription})
    if subscription is None and not wait:
        return "busy", 0
    if (subscription is None or subscription.status not in _OPEN_STATUSES
            or subscription.end_date > as_of):
        return "skipped", 0
    rows = db.session.scalars(
        select(Inventory).where(Inventory.subscription_id == subscription.id)
        .options(joinedload(Inventory.certificate_type, innerjoin=True))
        .order_by(Inventory.id).with_for_update(of=Inventory)
        .execution_options(populate_existing=True)
    ).all()
    rows = list(rows)
    blocker = renewal_blocker(subscription, rows)
    if blocker is not None:
        subscription.status = SubscriptionStatus.EXPIRED
        audit.record(None, "subscription.expire", subscription,
                     {"end_date": subscription.end_date, "reason": blocker},
                     actor_label=ACTOR_LABEL)
        return "expired", 0
    terms = 0
    while subscription.end_date <= as_of:
        _renew_one_term(subscription, rows)
        terms += 1
    return "renewed", terms


def _renew_one_term(subscription: Subscription, rows: list[Inventory]) -> None:
    """The next term from the old end date: inventory := renewal inventory, one charge."""
    start = subscription.end_date
    end = term_end(start, subscription.term_months)
    renewed_at = datetime.combine(start, time(0), tzinfo=UTC)
    db.session.add(SubscriptionTerm(subscription_id=subscription.id, start_date=start,
                                    end_date=end, created_at=clock.utcnow()))
    lines = [
        (row, price_line(row.certificate_type, row.renewal_quantity,
                         term_months=subscription.term_months, start_date=start,
                         end_date=end, as_of=start))
        for row in rows if row.renewal_quantity > 0
    ]
    transaction = Transaction(
        customer_id=subscription.customer_id, subscription_id=subscription.id,
        kind=TransactionKind.CHARGE, reason=TransactionReason.RENEWAL,
        amount=sum(line.amount for _row, line in lines),
        currency=subscription.customer.currency, created_at=renewed_at, actor_id=None,
    )
    db.session.add(transaction)
    for row, line in lines:
        db.session.add(TransactionLine(
            transaction=transaction, certificate_type_id=row.certificate_type_id,
            quantity=line.quantity, amount=line.amount, full_amount=line.full_amount,
            days_charged=line.days_charged, days_in_term=line.days_in_term,
            refunded_quantity=0, refunded_amount=0,
        ))
    for row in rows:
        row.quantity = row.renewal_quantity
    subscription.start_date, subscription.end_date = start, end
    db.session.flush()  # a duplicate term fails here and the whole item rolls back
    audit.record(None, "subscription.renew", subscription,
                 {"start_date": start, "end_date": end, "transaction_id": transaction.id,
                  "total": transaction.amount, "currency": transaction.currency,
                  "lines": {line.code: {"quantity": line.quantity, "amount": line.amount}
                            for _row, line in lines}},
                 actor_label=ACTOR_LABEL)


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
