"""``python -m tieline`` runs the ``tieline`` command."""

from .cli import main

main()
