"""Offline-first, source-grounded LLM extraction into DuckDB, scored against a gold set."""

__version__ = "0.1.0"
