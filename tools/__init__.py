"""Maintainer tools (not part of the pipeline)."""
