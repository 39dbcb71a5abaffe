"""System > Two-factor sign-in: every staff member's own page to turn it on (with the QR
code and a confirming code), see how many recovery codes are left and make new ones, and
turn it off where their role does not require it."""

from __future__ import annotations

from flask import flash, redirect, session, url_for
from flask_admin import expose
from flask_login import current_user

from .. import twofactor
from ..errors import DomainError
from ..extensions import db
from ..permissions import Permission
from .base import SecureBaseView
from .forms import ConsoleForm
from .login import (
    ENROLMENT_KEY,
    CodeForm,
    EnrolForm,
    RestartForm,
    current_staff_session,
    enrolment_page,
    recovery_codes_page,
    required_roles,
    two_factor_limit,
)


class CurrentCodeForm(CodeForm):
    """A change that a current code from the app must prove."""


class TwoFactorView(SecureBaseView):
    """The signed-in staff member's own two-factor sign-in."""

    permission = Permission.CONSOLE_READ

    def _page(self, form: ConsoleForm | None = None, code_form: ConsoleForm | None = None,
              status: int = 200):
        user = current_user._get_current_object()
        enrolled = twofactor.is_enrolled(user)
        if not enrolled:
            page = enrolment_page(
                user, form or EnrolForm(formdata=None), "system/two_factor.html",
                render=self.render, enrolled=False,
                required=twofactor.is_required(user, required_roles()),
                confirm_url=url_for(".confirm"), restart_url=url_for(".start"))
        else:
            page = self.render(
                "system/two_factor.html", user=user, enrolled=True,
                required=twofactor.is_required(user, required_roles()),
                codes_left=twofactor.recovery_codes_left(user),
                code_form=code_form or CurrentCodeForm(formdata=None))
        return page, status

    @expose("/")
    def index(self):
        return self._page()

    @expose("/start", methods=("POST",))
    def start(self):
        """A fresh secret and QR code (this browser's; one shown elsewhere stops working)."""
        if RestartForm().validate_on_submit():
            try:
                session[ENROLMENT_KEY] = twofactor.start_enrolment(current_user)
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                flash(str(exc), "error")
        return redirect(url_for(".index"), 303)

    @expose("/confirm", methods=("POST",))
    @two_factor_limit
    def confirm(self):
        form = EnrolForm()
        if not form.validate_on_submit():
            return self._page(form, status=400)
        try:
            codes = twofactor.confirm_enrolment(
                current_user, form.code.data, session.get(ENROLMENT_KEY), actor=current_user,
                keep=current_staff_session())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return self._page(form, status=400)
        session.pop(ENROLMENT_KEY, None)
        return recovery_codes_page("system/recovery_codes.html", codes, render=self.render,
                                   heading="Two-factor sign-in is on")

    @expose("/recovery-codes", methods=("POST",))
    @two_factor_limit
    def renew(self):
        """New recovery codes; the old ones stop working."""
        form = CurrentCodeForm()
        if not form.validate_on_submit():
            return self._page(code_form=form, status=400)
        try:
            codes = twofactor.renew_recovery_codes(current_user, form.code.data,
                                                   actor=current_user)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return self._page(code_form=form, status=400)
        return recovery_codes_page("system/recovery_codes.html", codes, render=self.render,
                                   heading="New recovery codes")

    @expose("/turn-off", methods=("POST",))
    @two_factor_limit
    def turn_off(self):
        form = CurrentCodeForm()
        if not form.validate_on_submit():
            return self._page(code_form=form, status=400)
        try:
            twofactor.turn_off(current_user, form.code.data, actor=current_user,
                               required_roles=required_roles())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return self._page(code_form=form, status=400)
        flash("Two-factor sign-in is off: you sign in with your password alone.", "success")
        return redirect(url_for(".index"), 303)
