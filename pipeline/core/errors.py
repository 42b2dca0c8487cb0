"""Errors that say what failed and how to fix it.

Every user-facing failure is a ``PipelineError``: the CLI prints ``str(err)`` as one line
and exits non-zero. Nothing below the CLI calls ``sys.exit``.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A failure the user can fix. ``fix`` says how."""

    #: the CLI's exit code for this failure
    exit_code = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} -- {fix}" if fix else problem)


class InputError(PipelineError):
    """A document or path the pipeline cannot read."""


class SchemaError(PipelineError):
    """A schema that cannot be loaded or does not follow the schema contract."""


class ProviderError(PipelineError):
    """A model that cannot be found, loaded or reached."""


class StoreError(PipelineError):
    """A database that cannot be opened or migrated."""
