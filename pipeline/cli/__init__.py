"""Thin typer commands over plain functions; one module per command."""
