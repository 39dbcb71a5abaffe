"""Gunicorn settings for the console in production: ``gunicorn -c gunicorn.conf.py app:app``.

Threaded workers (gthread) keep a long streamed CSV export on its own thread while the
worker keeps telling the arbiter it is alive, so an export is never cut off by the worker
timeout. Workers are recycled after a number of requests, with jitter, so they never all
restart at once. The access log carries each request's id (X-Request-ID), as the
application's own log lines do.

Several workers must count sign-in attempts in one shared store: with the default
``memory://`` each worker would keep its own count, so this file refuses to start them.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:5000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

_limiter_storage = (os.environ.get("BACKOFFICE_RATELIMIT_STORAGE_URI")
                    or os.environ.get("RATELIMIT_STORAGE_URI") or "memory://")
if workers > 1 and _limiter_storage.startswith("memory://"):
    raise SystemExit(
        f"gunicorn.conf.py: {workers} workers with RATELIMIT_STORAGE_URI={_limiter_storage} "
        "would each count sign-in attempts on their own. Set RATELIMIT_STORAGE_URI to a "
        "shared store (redis://127.0.0.1:6379/0) or run one worker (WEB_CONCURRENCY=1).")
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# With gthread the timeout bounds a worker that stopped answering, not a request.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "1000"))
max_requests_jitter = max_requests // 10
accesslog = "-"
errorlog = "-"
access_log_format = ('%(h)s "%(r)s" %(s)s %(B)s bytes %(M)sms '
                     'request_id=%({x-request-id}o)s user_agent="%(a)s"')
# The web workers never run the scheduler: ``flask jobs run`` is the job runner.
raw_env = ["SCHEDULER_ENABLED=0"]
