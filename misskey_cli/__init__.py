"""mkstream: watch and debug the Misskey streaming API from the shell."""

__version__ = "0.1.0"
