"""Renewal and monthly invoicing throughput on PostgreSQL, against a floor.

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_bench \\
        .venv/bin/python bench/bench_jobs.py --subscriptions 100000 --customers 50000

The database named by BENCH_DATABASE_URL is emptied, migrated and seeded with set-based
SQL: CUSTOMERS partner customers and SUBSCRIPTIONS monthly auto-renewing subscriptions
(spread evenly over the customers, two certificate types each) that all end on
2026-02-01, and BASELINE more that end a day earlier. Then, in this order:

0. the baseline: the BASELINE subscriptions renewed one per transaction (chunks of 1,
   close to how renewal worked before chunks), to show what chunking buys;
1. the renewal floor: the same writes as the renewal job (terms, charges, lines,
   inventory, subscription dates, audit events and the counter) as one bare set-based
   INSERT/UPDATE per table, rolled back;
2. the renewal job (``renewals.renew_due_subscriptions``, chunks of --chunk), timed, then
   checked: each subscription renewed exactly once, the audit chain whole;
3. the invoicing floor: February's invoices, their lines, the transactions' invoice ids
   and the events as bare set-based statements, rolled back;
4. BASELINE customers invoiced one per transaction (chunks of 1), then the rest by the
   invoicing job's loop (``invoicing.issue_in_chunks``, a commit per chunk), timed, with
   the process's memory sampled after every chunk, then checked.

Figures are rates and ratios against the floor of the same run, so they compare across
machines and loads; the absolute rates are what the targets (renewal >= 2,000
subscriptions/s, invoicing >= 1,000 customers/s with flat memory) are read from.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402

from backoffice import create_app, invoicing, renewals, subscriptions  # noqa: E402
from backoffice.audit import verify_chain  # noqa: E402
from backoffice.extensions import db  # noqa: E402

DUE = date(2026, 2, 1)
#: the baseline's subscriptions end a day earlier, so they can be renewed on their own
BASELINE_DUE = date(2026, 1, 31)
MONTH = date(2026, 2, 1)  # the renewal charges are dated 2026-02-01 00:00 UTC
MONTH_END = "2026-03-01 00:00:00+00"


def rss_mb() -> float:
    """The process's resident memory now, in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Statements:
    """Counts the statements sent to the database while enabled."""

    def __init__(self, engine: sa.Engine):
        self.count = 0
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args) -> None:
        self.count += 1


def reset(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


def seed(customers: int, subscriptions_count: int, baseline: int) -> float:
    """The catalog through the domain, the rest by INSERT ... SELECT generate_series."""
    started = time.perf_counter()
    for code, name, price in (("DV", "Domain Validated", 5000),
                              ("OV", "Organization Validated", 4999)):
        subscriptions.create_certificate_type(code=code, name=name, yearly_price=price)
    product = subscriptions.create_product(name="SSL bundle", certificate_types=["DV", "OV"],
                                           terms_months=[1, 12])
    db.session.flush()
    execute = db.session.execute
    execute(sa.text("""
        INSERT INTO customer (company_name, address1, city, postal_code, country,
                              administrative_responsibility, currency, created_at)
        SELECT 'Bench customer ' || g, g || ' Main Street', 'Springfield', '12345', 'US',
               'partner', 'USD', now()
        FROM generate_series(1, :n) AS g"""), {"n": customers})
    execute(sa.text("""
        INSERT INTO subscription (customer_id, product_id, term_months, start_date, end_date,
                                  auto_renew, status, created_at)
        SELECT first.id + (g - 1) % :customers, :product, 1, DATE '2026-01-01',
               CASE WHEN g <= :n THEN CAST(:due AS date) ELSE CAST(:baseline_due AS date) END,
               true, 'active', now()
        FROM generate_series(1, :n + :baseline) AS g,
             (SELECT min(id) AS id FROM customer) AS first"""),
        {"n": subscriptions_count, "baseline": baseline, "customers": customers,
         "product": product.id, "due": DUE, "baseline_due": BASELINE_DUE})
    execute(sa.text("""
        INSERT INTO inventory (subscription_id, certificate_type_id, quantity, renewal_quantity)
        SELECT s.id, t.id, 1 + s.id % 3, 1 + (s.id + t.id) % 3
        FROM subscription s CROSS JOIN certificate_type t"""))
    execute(sa.text("""
        INSERT INTO subscription_term (subscription_id, start_date, end_date, created_at)
        SELECT id, start_date, end_date, now() FROM subscription"""))
    db.session.commit()
    execute(sa.text("ANALYZE"))
    db.session.commit()
    return time.perf_counter() - started


def timed(body: Callable[[], object]) -> float:
    started = time.perf_counter()
    body()
    return time.perf_counter() - started


def _hash_joins_only() -> None:
    """For the floor's transaction: its later statements join rows its earlier ones just
    wrote, which the statistics do not know of yet; a nested loop over them would make
    the floor quadratic. Hash and merge joins keep it the best case it stands for."""
    db.session.execute(sa.text("SET LOCAL enable_nestloop = off"))


def renewal_floor() -> float:
    """The renewal's writes as one set-based statement per table, rolled back."""
    due = "s.status = 'active' AND s.end_date <= :due"

    def body():
        execute, p = db.session.execute, {"due": DUE}
        _hash_joins_only()
        execute(sa.text(f"""
            INSERT INTO subscription_term (subscription_id, start_date, end_date, created_at)
            SELECT s.id, s.end_date, (s.end_date + interval '1 month')::date, now()
            FROM subscription s WHERE {due}"""), p)
        execute(sa.text(f"""
            INSERT INTO "transaction" (customer_id, subscription_id, kind, reason, amount,
                                       currency, created_at)
            SELECT s.customer_id, s.id, 'charge', 'renewal',
                   sum(round(t.yearly_price * i.renewal_quantity / 12.0)), 'USD',
                   s.end_date::timestamptz
            FROM subscription s JOIN inventory i ON i.subscription_id = s.id
            JOIN certificate_type t ON t.id = i.certificate_type_id
            WHERE {due} GROUP BY s.id"""), p)
        execute(sa.text("""
            INSERT INTO transaction_line (transaction_id, certificate_type_id, quantity, amount,
                                          full_amount, days_charged, days_in_term,
                                          refunded_quantity, refunded_amount)
            SELECT x.id, i.certificate_type_id, i.renewal_quantity,
                   round(t.yearly_price * i.renewal_quantity / 12.0),
                   round(t.yearly_price * i.renewal_quantity / 12.0), 28, 28, 0, 0
            FROM "transaction" x JOIN inventory i ON i.subscription_id = x.subscription_id
            JOIN certificate_type t ON t.id = i.certificate_type_id
            WHERE x.reason = 'renewal' AND i.renewal_quantity > 0"""))
        execute(sa.text(f"""
            INSERT INTO audit_event (seq, created_at, actor_label, action, target_type,
                                     target_id, details, prev_hash, hash)
            SELECT c.value + row_number() OVER (ORDER BY s.id), now(), 'job:renewals',
                   'subscription.renew', 'Subscription', s.id::text,
                   json_build_object('start_date', s.end_date, 'transaction_id', x.id),
                   md5(s.id::text) || md5('prev'), md5(s.id::text) || md5('hash')
            FROM subscription s JOIN "transaction" x ON x.subscription_id = s.id
                 AND x.reason = 'renewal', counter c
            WHERE c.name = 'audit' AND {due}"""), p)
        execute(sa.text("""UPDATE counter SET value = value + :n WHERE name = 'audit'"""),
                {"n": 0})
        execute(sa.text(f"""
            UPDATE inventory i SET quantity = i.renewal_quantity FROM subscription s
            WHERE s.id = i.subscription_id AND {due}"""), p)
        execute(sa.text(f"""
            UPDATE subscription s SET start_date = s.end_date,
                   end_date = (s.end_date + interval '1 month')::date WHERE {due}"""), p)

    seconds = timed(body)
    db.session.rollback()
    return seconds


def invoicing_floor() -> float:
    """February's invoices as one set-based statement per table, rolled back."""
    params = {"month": MONTH, "end": MONTH_END}

    def body():
        execute = db.session.execute
        _hash_joins_only()
        execute(sa.text("""
            INSERT INTO invoice (number, kind, customer_id, period_start, billing, currency,
                                 total, issued_at)
            SELECT 'FLOOR-' || c.id, 'monthly', c.id, :month,
                   json_build_object('name', c.company_name, 'address1', c.address1,
                                     'city', c.city, 'postal_code', c.postal_code,
                                     'country', c.country),
                   'USD', sum(x.amount), now()
            FROM customer c JOIN "transaction" x ON x.customer_id = c.id
            WHERE x.invoice_id IS NULL AND x.created_at < CAST(:end AS timestamptz)
            GROUP BY c.id"""), params)
        execute(sa.text("""
            INSERT INTO invoice_line (invoice_id, position, description, quantity, amount,
                                      transaction_id)
            SELECT v.id, row_number() OVER (PARTITION BY v.id ORDER BY x.created_at, x.id, l.id),
                   t.name || ' (' || t.code || '), renewal, subscription #' || x.subscription_id
                   || ' (T' || x.id || ')', l.quantity, l.amount, x.id
            FROM invoice v JOIN "transaction" x ON x.customer_id = v.customer_id
            JOIN transaction_line l ON l.transaction_id = x.id
            JOIN certificate_type t ON t.id = l.certificate_type_id
            WHERE v.period_start = :month AND x.invoice_id IS NULL
              AND x.created_at < CAST(:end AS timestamptz)"""), params)
        execute(sa.text("""
            UPDATE "transaction" x SET invoice_id = v.id FROM invoice v
            WHERE v.customer_id = x.customer_id AND v.period_start = :month
              AND x.invoice_id IS NULL AND x.created_at < CAST(:end AS timestamptz)"""), params)
        execute(sa.text("""
            INSERT INTO audit_event (seq, created_at, actor_label, action, target_type,
                                     target_id, details, prev_hash, hash)
            SELECT c.value + row_number() OVER (ORDER BY v.id), now(), 'job:monthly-invoices',
                   'invoice.issue_monthly', 'Invoice', v.id::text,
                   json_build_object('number', v.number, 'total', v.total),
                   md5(v.id::text) || md5('prev'), md5(v.id::text) || md5('hash')
            FROM invoice v, counter c WHERE c.name = 'audit' AND v.period_start = :month"""),
            params)

    seconds = timed(body)
    db.session.rollback()
    return seconds


def run_renewal(chunk: int, total: int, counter: Statements) -> tuple[float, dict, int]:
    counter.count = 0
    started = time.perf_counter()
    counts = renewals.renew_due_subscriptions(today=DUE, chunk_size=chunk)
    seconds = time.perf_counter() - started
    return seconds, counts, counter.count


def run_invoicing(chunk: int, counter: Statements) -> tuple[float, int, list[float], int]:
    """The monthly job's loop: a commit after each chunk; RSS after each chunk."""
    counter.count = 0
    memory = []
    issued = 0
    started = time.perf_counter()
    for count in invoicing.issue_in_chunks(month=MONTH, chunk_size=chunk):
        db.session.commit()
        issued += count
        memory.append(rss_mb())
    db.session.commit()
    return time.perf_counter() - started, issued, memory, counter.count


def line(label: str, items: int, unit: str, seconds: float, floor: float) -> str:
    rate, floor_rate = items / seconds, items / floor
    return (f"{label:<10} {items:>9,} {unit} in {seconds:7.1f} s = {rate:>8,.0f}/s | floor "
            f"{floor:6.1f} s = {floor_rate:>8,.0f}/s | job/floor {rate / floor_rate:5.2f}")


def baseline_line(items: int, seconds: float, chunked_rate: float) -> str:
    rate = items / seconds
    return (f"           one per transaction (chunks of 1): {items:,} in {seconds:.1f} s = "
            f"{rate:,.0f}/s; chunked is {chunked_rate / rate:.1f} times as fast")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=renewals.CHUNK_SIZE)
    parser.add_argument("--baseline", type=int, default=1000,
                        help="subscriptions and customers done one per transaction first "
                             "(chunks of 1), for comparison")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip walking the whole audit chain at the end")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        print("Set BENCH_DATABASE_URL to a PostgreSQL database this benchmark may empty.",
              file=sys.stderr)
        return 2
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    reset(url)
    # the database is emptied and seeded here, so the run's own keys sign its audit chain
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": secrets.token_hex(16),
                      "AUDIT_KEY": secrets.token_hex(32), "SCHEDULER_ENABLED": False})
    problems = []
    with app.app_context():
        upgrade()
        seconds = seed(args.customers, args.subscriptions, args.baseline)
        print(f"seeded {args.customers:,} customers, {args.subscriptions:,} due subscriptions "
              f"(and {args.baseline:,} for the baseline) in {seconds:.1f} s (set-based SQL)")
        counter = Statements(db.engine)
        chunks = -(-args.subscriptions // args.chunk)

        started = time.perf_counter()
        one_by_one = renewals.renew_due_subscriptions(today=BASELINE_DUE, chunk_size=1)
        baseline = time.perf_counter() - started
        if one_by_one["renewed"] != args.baseline:
            problems.append(f"baseline renewal: {one_by_one}")
        # What autovacuum would do on a live server (this one may have it off): the tables
        # the baseline wrote were empty when its plans were made, and a plan kept from then
        # (the foreign-key checks' own) would scan the whole table for each row from here.
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
        floor = renewal_floor()
        cpu = time.process_time()
        seconds, counts, sent = run_renewal(args.chunk, args.subscriptions, counter)
        cpu = time.process_time() - cpu
        print(line("renewal", args.subscriptions, "subscriptions", seconds, floor))
        print(f"           {counts}; {sent:,} statements, {sent / chunks:.1f} per chunk "
              f"of {args.chunk}; {cpu:.1f} s of this process's CPU "
              f"({args.subscriptions / cpu:,.0f}/s), the rest is the database and waiting")
        print(baseline_line(args.baseline, baseline, args.subscriptions / seconds))
        renewed = db.session.execute(sa.text("""
            SELECT count(*), count(DISTINCT subscription_id) FROM "transaction"
            WHERE reason = 'renewal'""")).one()
        everyone = args.subscriptions + args.baseline
        if counts["renewed"] != args.subscriptions or tuple(renewed) != (everyone, everyone):
            problems.append(f"renewal: {counts}, charges and subscriptions charged {renewed}")

        floor = invoicing_floor()
        started = time.perf_counter()
        first = 0
        for count in invoicing.issue_in_chunks(month=MONTH, chunk_size=1):
            db.session.commit()
            first += count
            if first >= args.baseline:
                break
        baseline = time.perf_counter() - started
        rest = args.customers - first
        cpu = time.process_time()
        seconds, issued, memory, sent = run_invoicing(args.chunk, counter)
        cpu = time.process_time() - cpu
        print(line("invoicing", rest, "customers", seconds, floor * rest / args.customers))
        print(f"           {cpu:.1f} s of this process's CPU ({rest / cpu:,.0f}/s)")
        tenth = memory[max(0, len(memory) // 10 - 1)]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"           {issued:,} invoices; {sent:,} statements, "
              f"{sent / max(1, len(memory)):.1f} per chunk of {args.chunk}; RSS after "
              f"chunk 1 {memory[0]:.0f} MB, after 10% {tenth:.0f} MB, at the end "
              f"{memory[-1]:.0f} MB (peak {peak:.0f} MB)")
        print(baseline_line(first, baseline, rest / seconds))
        if issued != rest:
            problems.append(f"invoicing issued {issued} of {rest}")
        if memory[-1] - tenth > 50:
            problems.append(f"memory grew by {memory[-1] - tenth:.0f} MB while invoicing")
        if not args.no_verify:
            started = time.perf_counter()
            chain = verify_chain()
            print(f"audit chain: {'whole' if not chain else chain[:3]} "
                  f"({time.perf_counter() - started:.1f} s to verify)")
            if chain:
                problems.append("the audit chain is broken")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
