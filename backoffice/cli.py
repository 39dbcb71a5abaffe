"""``flask`` commands: staff accounts, demo data, audit checks and jobs.

Each command is one unit of work: it commits once when everything succeeded and
rolls back otherwise; ``seed-scale`` commits after every chunk, so a stopped run keeps
what it finished.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import NoReturn

import click
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from . import audit, scale, staff, summaries, twofactor
from .demo import seed
from .errors import DomainError
from .extensions import db
from .jobs import build_scheduler, registry, run_job
from .models import StaffRole, StaffUser


def register(app: Flask) -> None:
    """Attach every command to ``app``."""
    app.cli.add_command(create_staff_command)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(seed_scale_command)
    app.cli.add_command(bootstrap_command)
    app.cli.add_command(reset_two_factor_command)
    app.cli.add_command(audit_group)
    app.cli.add_command(jobs_group)


def _fail(message: str) -> NoReturn:
    db.session.rollback()
    click.secho(message, fg="red", err=True)
    sys.exit(1)


@click.command("create-staff")
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in StaffRole]), default="support",
              show_default=True)
@click.option("--name", default="", help="Display name (defaults to the email's local part).")
@click.option("--generate", is_flag=True, help="Generate a password and print it once.")
@with_appcontext
def create_staff_command(email: str, role: str, name: str, generate: bool) -> None:
    """Create a staff account; prompts for a password unless --generate is given."""
    if generate or not sys.stdin.isatty():
        password = staff.generate_password()
        show = True
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        show = False
    try:
        user = staff.create_staff(email=email, name=name, role=role, password=password,
                                 actor=None)
        db.session.commit()
    except DomainError as exc:
        _fail(str(exc))
    click.echo(f"Created {user.role.value} {user.email}.")
    if show:
        click.echo(f"Password (shown once): {password}")


@click.command("seed-demo")
@click.option("--profiles", default=300, show_default=True, help="How many storefront profiles.")
@with_appcontext
def seed_demo_command(profiles: int) -> None:
    """Fill the database with believable demo data; running it again adds nothing."""
    try:
        counts = seed(profiles=profiles)
        db.session.commit()
    except DomainError as exc:
        _fail(str(exc))
    if counts:
        click.echo("Demo data: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    else:
        click.echo("Demo data already present; nothing added.")


@click.command("seed-scale")
@click.option("--transactions", default=scale.Targets.transactions, show_default=True,
              help="Partner transactions (with their lines), at least.")
@click.option("--profiles", default=scale.Targets.profiles, show_default=True,
              help="Storefront profiles.")
@click.option("--orders", default=scale.Targets.orders, show_default=True,
              help="Storefront orders (with items, licences, invoices and payments).")
@click.option("--customers", default=scale.Targets.customers, show_default=True,
              help="Partner customers.")
@click.option("--subscriptions", default=scale.Targets.subscriptions, show_default=True,
              help="Partner subscriptions (each with its history of transactions).")
@with_appcontext
def seed_scale_command(transactions: int, profiles: int, orders: int, customers: int,
                       subscriptions: int) -> None:
    """Fill the database up to these numbers of rows, by the rules, for benchmarks.

    Each stage adds what is missing, a chunk at a time (one commit each): running it
    again adds nothing, and a stopped run carries on where it stopped.
    """
    targets = scale.Targets(transactions=transactions, profiles=profiles, orders=orders,
                            customers=customers, subscriptions=subscriptions)
    try:
        started = time.monotonic()
        for stage in scale.stages(targets):
            if not stage.missing:
                click.echo(f"{stage.label}: already there")
            stage_started = time.monotonic()
            with _progress(stage.missing, stage.label) as advance:
                for done in stage.run():  # nothing missing: it only builds what a stopped
                    db.session.commit()  # run left unbuilt, if anything
                    advance(done)
            if stage.missing:
                click.echo(f"{stage.label}: {stage.missing:,} added in "
                           f"{time.monotonic() - stage_started:,.0f} s")
        # the finished months' sums, which the dashboard and the monthly invoices read
        written = summaries.summarize_finished_days()
        db.session.commit()
        if any(written):
            click.echo(f"Monthly totals: {written.monthly_totals:,} rows; customer month "
                       f"totals: {written.customer_month_totals:,} rows")
        scale.analyze()
        db.session.commit()
    except DomainError as exc:
        _fail(str(exc))
    click.echo("Rows: " + ", ".join(f"{v:,} {k}" for k, v in scale.table_counts().items()))
    click.echo(f"Seeded in {time.monotonic() - started:,.0f} s.")


@contextlib.contextmanager
def _progress(total: int, label: str):
    """A progress bar on a terminal; in logs and pipes, a line every tenth of the way."""
    if not total:
        yield lambda _step: None
        return
    if sys.stdout.isatty():
        with click.progressbar(length=total, label=label) as bar:
            yield bar.update
        return
    done = 0
    tenth = 1

    def advance(step: int) -> None:
        nonlocal done, tenth
        done += step
        if tenth <= 10 and done >= total * tenth / 10:
            click.echo(f"{label}: {done:,}/{total:,}")
            while tenth <= 10 and done >= total * tenth / 10:
                tenth += 1

    yield advance


@click.command("bootstrap")
@click.option("--admin-email", default="admin@example.com", show_default=True)
@click.option("--demo/--no-demo", default=True, show_default=True)
@click.option("--url", default="http://127.0.0.1:5000", show_default=True,
              help="Where the console will be served, for the sign-in address printed.")
@with_appcontext
def bootstrap_command(admin_email: str, demo: bool, url: str) -> None:
    """First start: seed demo data when empty and create a first admin, printing its login."""
    has_staff = (db.session.scalar(select(func.count(StaffUser.id))) or 0) > 0
    try:
        if demo:
            counts = seed()
            if counts:
                click.echo("Demo data: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        password = None
        if not has_staff:
            password = staff.generate_password()
            staff.create_staff(email=admin_email, name="Administrator", role="admin",
                              password=password, actor=None)
        db.session.commit()
    except DomainError as exc:
        _fail(str(exc))
    if password:
        click.secho(f"First admin created. Sign in at {url.rstrip('/')}/login with", fg="green")
        click.secho(f"  email:    {admin_email}\n  password: {password}", fg="green")
        click.echo("This password is shown only once.")


@click.command("reset-two-factor")
@click.argument("email")
@with_appcontext
def reset_two_factor_command(email: str) -> None:
    """Reset a staff member's two-factor sign-in (a lost phone and lost recovery codes,
    with no other admin to do it on the Sessions page); their sessions end."""
    email = email.strip().lower()
    user = db.session.scalar(select(StaffUser).where(func.lower(StaffUser.email) == email))
    if user is None:
        _fail(f"No staff account has the email {email}.")
    try:
        ended = twofactor.reset(user, actor=None)
        db.session.commit()
    except DomainError as exc:
        _fail(str(exc))
    click.echo(f"Two-factor sign-in of {user.email} is reset; {ended} session(s) ended. "
               "They set it up again at their next sign-in.")


@click.group("audit")
def audit_group() -> None:
    """Audit log commands."""


@audit_group.command("verify")
@with_appcontext
def audit_verify_command() -> None:
    """Check the audit chain against its keyed hashes and its checkpoints; exits 1 and
    names each break when it was tampered with."""
    problems = audit.verify_chain()
    checkpoint = audit.last_checkpoint()
    if problems:
        for problem in problems:
            click.secho(f"event {problem.seq}: {problem.problem}", fg="red", err=True)
        sys.exit(1)
    click.echo("Audit chain intact.")
    if checkpoint is None:
        click.echo("No checkpoint yet (the nightly ledger check writes one).")
    else:
        click.echo(f"Last checkpoint: event {checkpoint.seq}, "
                   f"{checkpoint.created_at:%Y-%m-%d %H:%M} UTC.")


@click.group("jobs")
def jobs_group() -> None:
    """Scheduled jobs."""


@jobs_group.command("list")
@with_appcontext
def jobs_list_command() -> None:
    """List every job and its schedule."""
    for job in registry().values():
        click.echo(f"{job.name:18} {job.schedule:30} {job.title}")


@jobs_group.command("run-once")
@click.argument("name")
@with_appcontext
def jobs_run_once_command(name: str) -> None:
    """Run one job now, under its lease, with a progress bar, and print what it did."""
    if name not in registry():
        _fail(f"No job named {name}; see `flask jobs list`.")
    with contextlib.ExitStack() as stack:
        bar = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if not sys.stdout.isatty():  # logs and pipes get a line every tenth of the way
                if done == total or done % max(1, total // 10) == 0:
                    click.echo(f"{name}: {done}/{total}")
                return
            if bar is None:
                bar = stack.enter_context(click.progressbar(length=total, label=name))
            bar.update(done - bar.pos)

        run = run_job(name, trigger="cli", progress=progress)
    if run is None:
        _fail(f"{name} is running in another process right now; try again when it finishes.")
    click.echo(f"{name}: {run.status.value}; {run.details}")
    if run.error:
        _fail(run.error.splitlines()[0])


@jobs_group.command("run")
@with_appcontext
def jobs_run_command() -> None:
    """Run the scheduler in this process (production: one such process beside the web)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    scheduler = build_scheduler(app, BlockingScheduler)
    click.echo("Scheduler running; Ctrl+C stops it.")
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()
