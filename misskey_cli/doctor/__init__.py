"""mkstream doctor: why nothing arrives, one check at a time."""
