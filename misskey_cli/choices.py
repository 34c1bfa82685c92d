"""The fixed choices of a few options, shared by the CLI and the library.

A module of its own, with no imports, so that ``cli.py`` can build its options without loading
the output and connection code: ``mkstream --help`` stays fast.
"""

FORMATS = ("pretty", "ndjson", "raw", "line")
COLOR_MODES = ("auto", "always", "never")
AUTH_MODES = ("query", "header")
DEFAULT_STYLE = "monokai"
