"""One run: settings, the app that assembles it, the stream loop, backfill, replay."""
