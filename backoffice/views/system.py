"""System menu: staff, audit log, job runs and leases, the Jobs page, outbox, counters."""

from __future__ import annotations

from datetime import datetime

from flask import abort, current_app, flash, make_response, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select
from wtforms import EmailField, HiddenField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length, Optional

from .. import staff
from ..clock import utcnow
from ..extensions import db, limiter
from ..formats import audit_lines
from ..jobs import RUNNER_SILENCE, Job, last_runner, registry, request_run, runner_alive
from ..models import (
    AuditEvent,
    Counter,
    JobLock,
    JobRun,
    JobStatus,
    OutboxEmail,
    StaffRole,
    StaffUser,
)
from ..permissions import Permission
from .base import (
    DATA_CATEGORY,
    DataTableView,
    DomainModelView,
    ReadOnlyModelView,
    SecureBaseView,
    fmt_datetime,
    name_formatter,
    run_domain,
)
from .forms import MAX_ROW_ID, PASSWORD_RULES, ConsoleForm, NewPasswordForm, RecordIdsField
from .login import current_staff_session
from .navigation import came_from, staff_trail, then
from .staff_sessions import SessionsView
from .twofactor import TwoFactorView

CATEGORY = "System"

ROLE_CHOICES = [SelectChoice(r.value, r.value.title()) for r in StaffRole]

#: the longest password a staff member may set
MAX_PASSWORD_LENGTH = staff.MAX_PASSWORD_LENGTH

#: the most staff accounts one action (deactivate, activate) takes
MAX_SELECTED = 100

ROLE_MESSAGE = "Choose one of the roles."

#: a record id in an address (the app's int converter, bounded like every id column)
ID = f"int(max={MAX_ROW_ID})"


class StaffCreateForm(ConsoleForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES,
                       validators=[DataRequired(message=ROLE_MESSAGE)],
                       invalid_choice_message=ROLE_MESSAGE)
    password = StringField(
        "Password", validators=[Optional(), Length(max=MAX_PASSWORD_LENGTH)],
        description=f"{PASSWORD_RULES} Leave empty to generate one; it is shown once.",
    )


class StaffEditForm(ConsoleForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES,
                       validators=[DataRequired(message=ROLE_MESSAGE)],
                       invalid_choice_message=ROLE_MESSAGE)


#: the list page's actions, by name (a password reset is one account at a time, from its
#: page: see StaffUserView.reset_link_view)
STAFF_ACTIONS = ("deactivate", "activate")


class StaffActionForm(ConsoleForm):
    """The list page's action form (deactivate, activate): which action and which
    accounts, every id parsed and bounded."""

    action = HiddenField(validators=[AnyOf(STAFF_ACTIONS, message="Choose an action.")])
    url = HiddenField(validators=[Optional(), Length(max=2000)])
    rowid = RecordIdsField("Staff accounts", max_entries=MAX_SELECTED,
                           validators=[InputRequired(message="Select at least one account.")])


class StaffUserView(DomainModelView):
    """Staff accounts: admins create them, change roles, deactivate them and make password
    reset links. Nobody resets, deactivates or changes the role of their own account."""

    #: only admins see the staff list (who works here is not support's or finance's page)
    permission = Permission.STAFF_WRITE
    write_permission = Permission.STAFF_WRITE
    details_template = "system/staff_details.html"
    allow_create = True
    allow_edit = True
    column_list = ("id", "email", "name", "role", "active", "last_login_at", "created_at")
    column_details_list = column_list
    column_searchable_list = ("email", "name")
    column_filters = ("role", "active")
    column_default_sort = ("email", False)
    column_formatters = {"email": name_formatter("staffuser")}

    form_base_class = ConsoleForm
    create_form_class = StaffCreateForm
    edit_form_class = StaffEditForm

    def get_action_form(self):
        return StaffActionForm

    def create_from_form(self, form):
        password = form.password.data or staff.generate_password()
        user = staff.create_staff(email=form.email.data, name=form.name.data,
                                 role=form.role.data, password=password, actor=current_user)
        if not form.password.data:
            flash(Markup("Password for {}: <code>{}</code> (shown once).").format(
                user.email, password), "info")
        return user

    def update_from_form(self, form, model):
        staff.update_staff(model, name=form.name.data, role=form.role.data, actor=current_user)
        return model

    def is_action_allowed(self, name):
        return self._may_write() and super().is_action_allowed(name)

    def _each_selected(self, _raw_ids, operation, message):
        """Apply ``operation`` to each selected account, all in one unit of work.

        Flask-Admin calls an action only once its form (StaffActionForm) validated; the ids
        are that form's, parsed as whole numbers.
        """
        self.require(Permission.STAFF_WRITE)
        form = self.action_form()
        if not form.validate():
            abort(400)
        ids = form.rowid.data
        users = db.session.scalars(select(StaffUser).where(StaffUser.id.in_(ids))).all()

        def apply():
            return [operation(user) for user in users]

        ok, results = run_domain(apply)
        if ok:
            for text in results:
                if text:
                    flash(text, "success")
            flash(message.format(count=len(users)), "success")

    @action("deactivate", "Deactivate",
            "Deactivate the selected staff accounts? They are signed out at once.")
    def action_deactivate(self, ids):
        self._each_selected(
            ids, lambda u: staff.set_staff_active(u, False, actor=current_user),
            "{count} account(s) deactivated.")

    @action("activate", "Activate", "Reactivate the selected staff accounts?")
    def action_activate(self, ids):
        self._each_selected(
            ids, lambda u: staff.set_staff_active(u, True, actor=current_user),
            "{count} account(s) reactivated.")

    # ----------------------------------------------------------------------- reset link

    @expose(f"/reset-link/<{ID}:user_id>/", methods=("GET", "POST"))
    def reset_link_view(self, user_id: int):
        """An admin's password reset of one colleague: says what it does (GET), then makes
        a one-time link valid for an hour and shows it once (POST), never in a flash."""
        self.require(Permission.STAFF_WRITE)
        user = db.get_or_404(StaffUser, user_id)
        details_url = self.get_url(".details_view", id=user.id)
        if user.id == current_user.id:
            flash("You cannot reset your own password. Change it from your account page "
                  "(Change password, at the top), which asks for your current one.", "error")
            return redirect(details_url, 303)
        form = ResetLinkForm()
        crumbs = then(staff_trail(user), "Reset password")
        if request.method == "POST":
            if not form.validate_on_submit():
                flash("The page was out of date, so no link was made. Press the button "
                      "again.", "warning")
                return redirect(self.get_url(".reset_link_view", user_id=user.id), 303)
            ok, link = run_domain(lambda: staff.make_reset_link(user, actor=current_user))
            if not ok:
                return redirect(details_url, 303)
            url = url_for("auth.reset_password", token=link.token, _external=True)
            return shown_once(self.render("system/staff_reset_link.html", user=user,
                                          link=link, link_url=url, details_url=details_url,
                                          breadcrumbs=crumbs))
        return self.render("system/staff_reset_link.html", user=user, form=form, link=None,
                           cancel_url=came_from(details_url), breadcrumbs=crumbs,
                           lifetime_minutes=int(staff.RESET_LINK_LIFETIME.total_seconds() // 60),
                           details_url=details_url)


class ResetLinkForm(ConsoleForm):
    """The "Make a reset link" button: nothing but its CSRF token."""


def shown_once(body: str):
    """A page carrying a secret shown once: never stored by the browser or a proxy."""
    response = make_response(body)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# --------------------------------------------------------------------------- own account


class ChangePasswordForm(NewPasswordForm):
    """The account page's form: the current password, then the new one twice."""

    current = PasswordField(
        "Current password", render_kw={"autocomplete": "current-password"},
        validators=[InputRequired(message="Type your current password."),
                    Length(max=MAX_PASSWORD_LENGTH)])


class AccountView(SecureBaseView):
    """The signed-in staff member's own account: who they are, and changing their
    password (the current one first). Reached from the top bar, not the menu."""

    def is_visible(self) -> bool:
        return False

    @expose("/", methods=("GET", "POST"))
    @limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
    def index(self):
        form = ChangePasswordForm()
        if form.validate_on_submit():
            me = current_user._get_current_object()
            ok, _ = run_domain(
                lambda: staff.change_own_password(me, current=form.current.data,
                                                  new=form.password.data,
                                                  keep=current_staff_session()),
                "Your password is changed. Your other sessions are signed out; this one "
                "stays signed in.")
            if ok:
                return redirect(self.get_url(".index"), 303)
        response = make_response(self.render("system/account.html", form=form))
        response.headers["Cache-Control"] = "no-store"
        return response


class AuditEventView(ReadOnlyModelView):
    """The audit log: read-only for everyone, newest first."""

    column_list = ("seq", "created_at", "actor_label", "action", "target_type", "target_id",
                   "details")
    column_details_list = ("seq", "created_at", "actor_label", "action", "target_type",
                           "target_id", "details", "prev_hash", "hash")
    column_searchable_list = ("action", "actor_label", "target_id")
    column_filters = ("action", "target_type", "actor_label", "created_at")
    column_default_sort = ("seq", True)
    column_labels = {"seq": "#", "actor_label": "Actor", "target_type": "Target",
                     "target_id": "Target id"}
    column_formatters = {"details": lambda _v, _c, model, _n: _audit_details(model.details)}
    column_formatters_detail = column_formatters


def _audit_details(details: dict | None) -> Markup:
    """An event's details for people: a line per fact, money in major units, before → after."""
    return Markup("<br>").join(audit_lines(details, current_app.config.get(
        "DISPLAY_LOCALE", "en_US")))


class JobRunView(ReadOnlyModelView):
    column_list = ("id", "job", "trigger", "arguments", "status", "started_at", "finished_at",
                   "processed", "details", "error")
    column_filters = ("job", "status", "trigger", "started_at")
    column_default_sort = ("started_at", True)


class JobLockView(DataTableView):
    column_list = ("job", "holder", "lease_until")
    column_default_sort = ("job", False)


class OutboxEmailView(ReadOnlyModelView):
    column_list = ("id", "to", "subject", "created_at", "sent_at", "attempts", "last_error")
    column_details_list = ("id", "to", "subject", "body", "created_at", "sent_at", "attempts",
                           "next_attempt_at", "last_error")
    column_searchable_list = ("to", "subject")
    column_filters = ("sent_at", "created_at")


class CounterView(DataTableView):
    column_list = ("name", "value")
    column_default_sort = ("name", False)


# --------------------------------------------------------------------------- jobs page

#: how many recent runs the page lists per job
RECENT_RUNS = 5


def next_run_time(job: Job) -> datetime | None:
    """When the job runs next: from the scheduler in this process, else from its trigger."""
    scheduler = current_app.extensions.get("backoffice_scheduler")
    if scheduler is not None and scheduler.running:
        scheduled = scheduler.get_job(job.name)
        if scheduled is not None:
            return scheduled.next_run_time
    return job.trigger().get_next_fire_time(None, utcnow())


def describe_counts(details: dict | None) -> str:
    """A run's counts for people: "renewed 3, expired 1, anomalies 0"."""
    parts = []
    for key, value in (details or {}).items():
        label = key.replace("_", " ")
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            parts.append(f"{label} {value}")
        elif isinstance(value, list):
            parts.append(f"{label} {len(value)}")
        elif isinstance(value, str):
            parts.append(f"{label} {value}")
    return ", ".join(parts) or "nothing to report"


class RunNowForm(ConsoleForm):
    """The Jobs page's "Run now" button: nothing but the CSRF token."""


class JobsView(SecureBaseView):
    """Each job's schedule, next run and last runs, with a "Run now" button."""

    permission = Permission.JOB_RUN

    @expose("/")
    def index(self):
        rows = []
        for job in registry().values():
            runs = db.session.scalars(
                select(JobRun).where(JobRun.job == job.name)
                .order_by(JobRun.id.desc()).limit(RECENT_RUNS)
            ).all()
            rows.append({"job": job, "next_run": next_run_time(job), "runs": runs})
        scheduler = current_app.extensions.get("backoffice_scheduler")
        busy = any(run.status in (JobStatus.QUEUED, JobStatus.RUNNING)
                   for row in rows for run in row["runs"])
        return self.render("system/jobs.html", rows=rows, describe_counts=describe_counts,
                           scheduler_here=scheduler is not None and scheduler.running,
                           runner=last_runner(), runner_alive=runner_alive(),
                           refresh=busy, form=RunNowForm(), now=utcnow())

    @expose("/run/<job_name>", methods=("POST",))
    def run_now(self, job_name: str):
        """Queue a run for the job runner and come straight back: the page shows it go
        from queued to running to finished."""
        self.require(Permission.JOB_RUN)
        job = registry().get(job_name)
        if job is None:
            abort(404)
        back = redirect(url_for(".index"), 303)
        form = RunNowForm()
        if not form.validate_on_submit():
            flash("The page was out of date, so nothing was queued. Press Run now again.",
                  "warning")
            return back
        waiting = db.session.scalar(select(JobRun).where(
            JobRun.job == job.name, JobRun.status == JobStatus.QUEUED))
        if waiting is not None:
            flash(f"{job.title} is already queued (since "
                  f"{fmt_datetime(waiting.requested_at)}); it runs once.", "info")
            return back
        request_run(job.name, staff=current_user)
        db.session.commit()
        if runner_alive():
            flash(f"{job.title} is queued; the job runner starts it within seconds.",
                  "success")
        else:
            flash(f"{job.title} is queued, but no job runner has been seen for "
                  f"{int(RUNNER_SILENCE.total_seconds())} seconds: it starts when one runs "
                  "(flask --app app jobs run).", "warning")
        return back


def register(admin, db) -> None:
    """Add the System menu to the console."""
    admin.add_view(StaffUserView(StaffUser, db, name="Staff", category=CATEGORY))
    admin.add_view(AuditEventView(AuditEvent, db, name="Audit log", category=CATEGORY))
    admin.add_view(JobRunView(JobRun, db, name="Job runs", category=CATEGORY))
    admin.add_view(JobLockView(JobLock, db, name="Job leases", category=DATA_CATEGORY))
    admin.add_view(OutboxEmailView(OutboxEmail, db, name="Email outbox", category=CATEGORY))
    admin.add_view(CounterView(Counter, db, name="Counters", category=DATA_CATEGORY))
    admin.add_view(JobsView(name="Jobs", endpoint="jobs", category=CATEGORY))
    admin.add_view(AccountView(name="Your account", endpoint="account", url="account"))
    admin.add_view(SessionsView(name="Sessions", endpoint="sessions", category=CATEGORY))
    admin.add_view(TwoFactorView(name="Two-factor sign-in", endpoint="two_factor",
                                 category=CATEGORY))
