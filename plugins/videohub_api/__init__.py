"""Videohub TCP API (in progress)."""
