"""``python -m tritonkit`` runs the CLI."""

from tritonkit.cli import app

app()
