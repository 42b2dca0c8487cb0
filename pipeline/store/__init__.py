"""DuckDB storage: the only way into the database.

``Store`` is one class assembled from one module per job:

- ``db``: opening the file, migrations (``migrations``), transactions, record tables;
- ``runs``: what ``pipeline extract`` writes (documents, runs, chunk results, cache, entities);
- ``reads``: what ``eval``, ``report`` and ``export`` read (a run, its schema, documents, records);
- ``evals``: what ``pipeline eval`` stores;
- ``views``: the friendly SQL views over the record tables (``ensure_views``).
"""

from __future__ import annotations

from pipeline.core.schema import Schema
from pipeline.store.evals import EvalWrites
from pipeline.store.reads import Reads
from pipeline.store.runs import RunWrites
from pipeline.store.views import ensure_views

__all__ = ["Store"]


class Store(RunWrites, Reads, EvalWrites):
    """Read/write access to one pipeline database. Use as a context manager."""

    def ensure_views(self, schema: Schema) -> dict[str, str]:
        """Create or refresh one view per record type; return {record type: view name}."""
        with self.transaction():
            return ensure_views(self.con, schema)
