"""Utility sub-commands and helpers that are not measurements."""
