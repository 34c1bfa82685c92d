"""Recordings (--record): the format, the writer and the reader."""
