"""Entry point: ``flask --app app run`` serves the back-office console."""

from backoffice import create_app

app = create_app()
