"""The Jobs page (System menu): schedules, next runs, recent runs and "Run now" (admins)."""

from __future__ import annotations

from datetime import datetime

from flask import abort, current_app, flash, redirect, url_for
from flask_admin import expose
from flask_login import current_user
from sqlalchemy import select

from .. import audit
from ..clock import utcnow
from ..extensions import db
from ..jobs import Job, registry, run_job
from ..models import JobRun, JobStatus
from ..permissions import Permission
from .base import SecureBaseView

CATEGORY = "System"

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


class JobsView(SecureBaseView):
    """Each job's schedule, next run and last runs, with a "Run now" button."""

    permission = Permission.JOB_RUN

    @expose("/")
    def index(self):
        rows = []
        for job in registry().values():
            runs = db.session.scalars(
                select(JobRun).where(JobRun.job == job.name)
                .order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(RECENT_RUNS)
            ).all()
            rows.append({"job": job, "next_run": next_run_time(job), "runs": runs})
        scheduler = current_app.extensions.get("backoffice_scheduler")
        return self.render("jobs/index.html", rows=rows, describe_counts=describe_counts,
                           scheduler_here=scheduler is not None and scheduler.running)

    @expose("/run/<job_name>", methods=("POST",))
    def run_now(self, job_name: str):
        self.require(Permission.JOB_RUN)
        name = job_name
        job = registry().get(name)
        if job is None:
            abort(404)
        run = run_job(name, trigger="manual")
        if run is None:
            flash(f"{job.title} is running in another process right now; its run appears "
                  "here when it finishes.", "warning")
            return redirect(url_for(".index"), 303)
        audit.record(current_user, "job.run_now", run,
                     {"job": name, "status": run.status.value, "details": run.details})
        db.session.commit()
        if run.status == JobStatus.FAILED:
            first_line = (run.error or "").splitlines()[0] if run.error else "unknown error"
            flash(f"{job.title} failed: {first_line}", "error")
        else:
            flash(f"{job.title} finished: {describe_counts(run.details)}.", "success")
        return redirect(url_for(".index"), 303)


def register(admin, db) -> None:
    """Add the Jobs page to the System menu."""
    admin.add_view(JobsView(name="Jobs", endpoint="jobs", category=CATEGORY))
