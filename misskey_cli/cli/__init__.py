"""The command line: click definitions only. Parses, builds frozen settings, calls one entry point."""
