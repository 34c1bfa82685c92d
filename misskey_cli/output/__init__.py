"""Turning frames into records and writing them: formats, jq, the line view, notices, the writer."""
