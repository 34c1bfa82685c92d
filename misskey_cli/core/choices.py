"""The fixed choices of a few options, and the one table of config-profile keys, shared by the CLI
and the library.

A module of its own, with no imports, so that ``cli.py`` can build its options without loading
the output and connection code: ``mkstream --help`` stays fast.
"""

FORMATS = ("pretty", "ndjson", "raw", "line")
COLOR_MODES = ("auto", "always", "never")
AUTH_MODES = ("query", "header")
DEFAULT_STYLE = "monokai"

# Config profile keys: (key, TOML type, the click parameter it defaults, help). One table drives
# profile loading (profiles/config_file.py), click's default_map (cli/options.py) and the `mkstream profiles` help.
PROFILE_KEYS: tuple[tuple[str, type, str, str], ...] = (
    ("host", str, "host", "server, as --host takes it"),
    ("token", str, "token", "the access token itself"),
    ("token_file", str, "token_file", "a file holding the token, relative to the config file"),
    ("auth", str, "auth", "query or header"),
    ("ca_file", str, "ca_file", "CA bundle to verify TLS against"),
    ("proxy", str, "proxy", "HTTP proxy URL"),
    ("format", str, "fmt", "pretty, ndjson, raw or line"),
    ("color", str, "color", "auto, always or never"),
    ("style", str, "style", "pygments style"),
    ("timestamps", bool, "timestamps", "true to add receive times"),
)
