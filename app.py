"""Entry point: ``flask --app app run`` serves the back-office console, ``gunicorn app:app``
too; ``flask --app app <command>`` runs a command. Logging is set up here, once."""

from backoffice import create_app
from backoffice.logconfig import configure_logging

configure_logging()
app = create_app()
