"""Shared contracts: data types, schema introspection, errors."""
