"""``python -m citytwin.cli``."""

from citytwin.cli import main

main()
