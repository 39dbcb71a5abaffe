"""The console's one Review -> Confirm mechanism.

Every page that changes money, credit, inventory or an account's structure works the
same way:

1. **Review.** The page's form (a :class:`~.forms.ReviewForm`) is posted with
   ``step=review``. The domain's quote function builds the review, and the page shows
   it with a signed token: the staff member, the operation, its target, a fingerprint of
   the review and a fresh idempotency key (itsdangerous, valid REVIEW_MAX_AGE seconds).
2. **Confirm.** The review page posts the same fields back with ``step=confirm`` and the
   token. The token must be valid and made for this staff member, operation and target.
   The key is claimed in ``applied_operation`` (UNIQUE), the review is built again and
   must match the reviewed fingerprint, and only then is the operation applied, in the
   same transaction as the claim.

- **A repeat** of the same Confirm (double-click, retry, replay), serial or concurrent,
  finds the claimed key and lands on the first result with a message saying when and by
  whom it was applied. It never applies twice and never shows an error page.
- **A stale review** (a price, the inventory, a balance or a state changed since) applies
  nothing: the page shows the new review to confirm instead.
- **A refusal** of the domain rolls everything back (the claim too) and shows the form
  with the domain's sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app, flash, redirect, url_for
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.exc import IntegrityError

from .. import idempotency
from ..errors import DomainError
from ..extensions import db
from ..models import AppliedOperation
from .base import fmt_datetime
from .forms import ReviewForm

#: seconds a review may be confirmed for (config REVIEW_MAX_AGE_SECONDS)
REVIEW_MAX_AGE = 3600


@dataclass(frozen=True)
class Operation:
    """One reviewed change, as a page describes it to :func:`review_confirm`."""

    #: what is done, e.g. "subscription.add"
    name: str
    #: what it is done to, e.g. "customer:12"
    target: str
    #: the domain's quote: builds the review, raises DomainError to refuse; writes nothing
    review: Callable[[], Any]
    #: the domain verb, given the review that was confirmed; returns the result
    apply: Callable[[Any], Any]
    #: the page that shows the result
    landing: Callable[[Any], str]
    #: the success message, or a function of the result that makes it
    done: str | Callable[[Any], str]


def review_confirm(operation: Operation, form: ReviewForm, *, show_form: Callable[[], Any],
                   show_review: Callable[[Any, str], Any]):
    """Answer the POST of a validated ``form``: show the review, or confirm it once.

    ``show_form()`` renders the page's form again (after a refusal);
    ``show_review(review, token)`` renders the review with the token to confirm it.
    """
    show_form = _as_new_review(form, show_form)
    if form.step.data != "confirm":
        return _review(operation, form, show_form, show_review)
    claims = _read_token(form, operation)
    if claims is None:
        flash("This review has expired or was not made for this page. Here it is again: "
              "check it and confirm.", "warning")
        return _review(operation, form, show_form, show_review)
    previous = idempotency.applied(claims["key"])
    if previous is not None:
        return _land_on(previous)
    try:
        applied = idempotency.claim(claims["key"], staff=current_user, operation=operation.name,
                                    target=operation.target)
        review = operation.review()
        if idempotency.fingerprint(review) != claims["fp"]:
            db.session.rollback()
            flash("This changed since you reviewed it. Nothing was applied: check the new "
                  "review and confirm again.", "warning")
            return show_review(review, _token(operation, form, review))
        result = operation.apply(review)
        applied.result_url = operation.landing(result)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        previous = idempotency.applied(claims["key"])
        if previous is not None:
            return _land_on(previous)
        flash("Another change got there first, so nothing was applied. Check the page and "
              "try again.", "error")
        return show_form()
    except DomainError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return show_form()
    done = operation.done
    flash(done(result) if callable(done) else done, "success")
    return redirect(applied.result_url, code=303)


def _as_new_review(form: ReviewForm, show_form: Callable[[], Any]) -> Callable[[], Any]:
    """``show_form`` with the form set back to asking for a review, so that pressing its
    button after a refusal reviews again instead of confirming nothing."""

    def again():
        form.step.data = "review"
        return show_form()

    return again


def _review(operation: Operation, form: ReviewForm, show_form, show_review):
    try:
        review = operation.review()
    except DomainError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return show_form()
    return show_review(review, _token(operation, form, review))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"],
                                  salt="backoffice.review-confirm")


#: fields that carry the mechanism itself rather than what is reviewed
_OWN_FIELDS = frozenset({"csrf_token", "step", "review_token"})


def _inputs(form: ReviewForm) -> str:
    """A digest of what was typed, so a Confirm applies exactly the reviewed inputs."""
    return idempotency.fingerprint({field.name: list(field.raw_data or ())
                                    for field in form if field.name not in _OWN_FIELDS})


def _token(operation: Operation, form: ReviewForm, review: Any) -> str:
    return _serializer().dumps({
        "op": operation.name, "target": operation.target, "staff": current_user.id,
        "inputs": _inputs(form), "fp": idempotency.fingerprint(review),
        "key": idempotency.new_key()})


def _read_token(form: ReviewForm, operation: Operation) -> dict | None:
    """The token's claims when it is valid, fresh, made for this page and staff member, and
    the posted inputs are the reviewed ones."""
    max_age = current_app.config.get("REVIEW_MAX_AGE_SECONDS", REVIEW_MAX_AGE)
    try:
        claims = _serializer().loads(form.review_token.data or "", max_age=max_age)
    except BadSignature:
        return None
    expected = {"op": operation.name, "target": operation.target, "staff": current_user.id,
                "inputs": _inputs(form)}
    if not isinstance(claims, dict) or any(claims.get(k) != v for k, v in expected.items()):
        return None
    if not isinstance(claims.get("key"), str) or not isinstance(claims.get("fp"), str):
        return None
    return claims


def _land_on(previous: AppliedOperation):
    staff = previous.staff
    flash(f"This was already applied on {fmt_datetime(previous.created_at)} by "
          f"{staff.name} ({staff.email}); nothing was changed.", "info")
    return redirect(previous.result_url or url_for("admin.index"), code=303)
