"""System > Sessions: who is signed in where, and each staff member's two-factor state.

Admins end one session or all of a staff member's, and reset a colleague's two-factor
sign-in (which ends their sessions too). Every action is a POST with its CSRF token and
writes its audit event.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

from flask import abort, current_app, flash, redirect, url_for
from flask_admin import expose
from flask_login import current_user, logout_user
from sqlalchemy import func, select

from .. import sessions, twofactor
from ..extensions import db
from ..models import RecoveryCode, StaffSession, StaffUser
from ..permissions import Permission
from .base import SecureBaseView, run_domain
from .forms import ConsoleForm
from .login import current_staff_session, required_roles, stage
from .navigation import staff_trail, then

#: the most staff members and sessions the page lists
MAX_ROWS = 500
#: how many ended sessions a staff member's page shows
RECENT_ENDED = 20


class SessionActionForm(ConsoleForm):
    """End a session, end them all, reset two-factor sign-in: nothing but the CSRF token."""


#: (name, pattern with the version as group 1), first match wins: Edge and Opera say
#: "Chrome" too, and Chrome says "Safari"
_BROWSERS = (("Edge", r"Edg(?:e|A|iOS)?/(\d+)"), ("Opera", r"OPR/(\d+)"),
             ("Firefox", r"(?:Firefox|FxiOS)/(\d+)"), ("Chrome", r"(?:Chrome|CriOS)/(\d+)"),
             ("Safari", r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/"))
_SYSTEMS = (("Android", "Android"), ("iOS", "iPhone|iPad"), ("Windows", "Windows"),
            ("macOS", "Macintosh|Mac OS X"), ("ChromeOS", "CrOS"), ("Linux", "Linux"))


def describe_browser(user_agent: str) -> str:
    """A short name for a browser string, e.g. "Chrome 120 on Linux"; the string itself
    (cut short) when it names no browser we know."""
    if not user_agent:
        return "unknown"
    browser = next((f"{name} {match.group(1)}" for name, pattern in _BROWSERS
                    if (match := re.search(pattern, user_agent))), None)
    system = next((name for name, pattern in _SYSTEMS if re.search(pattern, user_agent)), None)
    if browser is None:
        return user_agent[:40] + ("…" if len(user_agent) > 40 else "")
    return f"{browser} on {system}" if system else browser


def describe_duration(duration: timedelta) -> str:
    """ "8 hours", "90 minutes"."""
    minutes = int(duration.total_seconds() // 60)
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


STAGE_LABELS = {"signed-in": "signed in", "code": "waiting for the two-factor code",
                "enrol": "setting up two-factor sign-in", "password": "half-way, abandoned"}


class SessionsView(SecureBaseView):
    """Open staff sessions, and each staff member's two-factor sign-in."""

    permission = Permission.STAFF_WRITE

    def _lifetime(self):
        return current_app.permanent_session_lifetime

    def _context(self) -> dict:
        current = current_staff_session()
        return {"form": SessionActionForm(formdata=None), "describe_browser": describe_browser,
                "stage_label": lambda row: STAGE_LABELS[stage(row)],
                "current_id": current.id if current is not None else None}

    @expose("/")
    def index(self):
        open_rows = sessions.active_sessions(self._lifetime(), limit=MAX_ROWS)
        counts = Counter(row.user_id for row in open_rows)
        staff = db.session.scalars(select(StaffUser).order_by(StaffUser.email)
                                   .limit(MAX_ROWS)).all()
        return self.render("system/sessions.html", rows=open_rows, staff=staff,
                           counts=counts, required=required_roles(),
                           lifetime=describe_duration(self._lifetime()),
                           is_enrolled=twofactor.is_enrolled, **self._context())

    def _user(self, user_id: int) -> StaffUser:
        user = db.session.get(StaffUser, user_id)
        if user is None:
            abort(404)
        return user

    @expose("/staff/<int:user_id>")
    def staff_member(self, user_id: int):
        user = self._user(user_id)
        ended = db.session.scalars(
            select(StaffSession).where(StaffSession.user_id == user.id,
                                       StaffSession.ended_at.is_not(None))
            .order_by(StaffSession.ended_at.desc()).limit(RECENT_ENDED)).all()
        codes_left = db.session.scalar(select(func.count(RecoveryCode.id)).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))
        return self.render(
            "system/session_user.html", user=user,
            rows=sessions.active_sessions(self._lifetime(), user=user, limit=MAX_ROWS),
            ended=ended, enrolled=twofactor.is_enrolled(user), codes_left=codes_left,
            required=twofactor.is_required(user, required_roles()),
            breadcrumbs=then(staff_trail(user), "Sessions"), **self._context())

    def _checked(self) -> bool:
        self.require(Permission.STAFF_WRITE)
        if not SessionActionForm().validate_on_submit():
            flash("The page was out of date, so nothing was done. Try again.", "warning")
            return False
        return True

    def _after_own_end(self):
        """The admin ended their own session: this browser is signed out."""
        logout_user()
        flash("You ended your own session, so you are signed out.", "info")
        return redirect(url_for("auth.login"), 303)

    @expose("/end/<int:session_id>", methods=("POST",))
    def end_one(self, session_id: int):
        row = db.session.get(StaffSession, session_id)
        if row is None:
            abort(404)
        back = redirect(url_for(".staff_member", user_id=row.user_id), 303)
        if not self._checked():
            return back
        own = row.id == getattr(current_staff_session(), "id", None)
        ok, ended = run_domain(lambda: sessions.end_session(row, "admin", actor=current_user))
        if ok and own:
            return self._after_own_end()
        if ok:
            flash("The session is ended: that browser is signed out." if ended
                  else "That session had already ended.", "success" if ended else "info")
        return back

    @expose("/staff/<int:user_id>/end", methods=("POST",))
    def end_all(self, user_id: int):
        user = self._user(user_id)
        back = redirect(url_for(".staff_member", user_id=user.id), 303)
        if not self._checked():
            return back
        own = user.id == current_user.id
        keep = current_staff_session() if own else None
        ok, count = run_domain(
            lambda: sessions.end_sessions(user, "admin", actor=current_user, keep=keep))
        if ok:
            whose = "your other" if own else f"{user.email}'s"
            flash(f"Ended {count} of {whose} sessions." if count
                  else f"There were none of {whose} sessions open.", "success")
        return back

    @expose("/staff/<int:user_id>/reset-two-factor", methods=("POST",))
    def reset_two_factor(self, user_id: int):
        user = self._user(user_id)
        back = redirect(url_for(".staff_member", user_id=user.id), 303)
        if not self._checked():
            return back
        ok, count = run_domain(lambda: twofactor.reset(user, actor=current_user))
        if ok:
            flash(f"Two-factor sign-in of {user.email} is reset and {count} session(s) of "
                  "theirs ended. They set it up again at their next sign-in"
                  f"{'' if twofactor.is_required(user, required_roles()) else ' if they wish'}.",
                  "success")
        return back
