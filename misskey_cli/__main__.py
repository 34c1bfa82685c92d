"""Allows ``python -m misskey_cli``."""

from misskey_cli.cli import main

main()
