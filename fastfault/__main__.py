"""``python -m fastfault`` runs the command line."""

from fastfault.cli import main

main()
