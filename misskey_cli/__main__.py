"""Allows ``python -m misskey_cli``."""

from misskey_cli.cli.group import main

main()
