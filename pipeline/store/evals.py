"""What ``pipeline eval`` stores: a run's scores against one gold set in one mode
(``eval_runs``, ``eval_type_scores``, ``eval_field_scores``, ``eval_items``; migration 002)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipeline.store.db import StoreBase, insert_rows, now

if TYPE_CHECKING:
    from pipeline.evaluate import EvalReport


class EvalWrites(StoreBase):
    """Scores of evaluated runs."""

    def save_eval(self, report: EvalReport) -> None:
        """Replace the stored scores of this run + gold set + mode with ``report``."""
        eid = report.eval_id
        with self.transaction():
            for table in ("eval_items", "eval_field_scores", "eval_type_scores", "eval_runs"):
                self.con.execute(f"DELETE FROM {table} WHERE eval_id = ?", [eid])
            self.con.execute(
                "INSERT INTO eval_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    eid,
                    report.run_id,
                    report.gold_hash,
                    report.mode,
                    report.include_ungrounded,
                    report.schema_name,
                    report.gold_dir,
                    now(),
                    len(report.documents),
                    len(report.missing_documents),
                    len(report.unscored),
                    report.micro.precision,
                    report.micro.recall,
                    report.micro.f1,
                    report.macro_f1,
                    report.grounding_rate,
                    report.model_dump_json(),
                ],
            )
            insert_rows(
                self.con,
                "eval_type_scores",
                [[eid, name, s.tp, s.fp, s.fn, s.precision, s.recall, s.f1] for name, s in report.per_type.items()],
            )
            insert_rows(
                self.con,
                "eval_field_scores",
                [
                    [eid, name, field, fs.correct, fs.total, fs.accuracy]
                    for name, per_field in report.per_field.items()
                    for field, fs in per_field.items()
                ],
            )
            items: list[list[Any]] = []
            for doc_id, per_type in report.documents.items():
                for name, res in per_type.items():
                    for outcome, golds in (("found", res.found), ("missed", res.missed), ("absorbed", res.absorbed)):
                        items += [
                            [eid, doc_id, name, outcome, g.gold_index, g.record_id, g.similarity, json.dumps(g.key)]
                            for g in golds
                        ]
                    items += [
                        [eid, doc_id, name, "spurious", None, p.record_id, None, json.dumps(p.key)]
                        for p in res.spurious
                    ]
            if items:
                insert_rows(self.con, "eval_items", items)
