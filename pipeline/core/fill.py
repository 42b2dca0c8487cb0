"""What a schema package declares about filling fields after records are built (``Domain.fill``).

Records built from candidate spans (``rules``) hold names; the other fields stay empty or take
the nearest span. The fill step (``pipeline.strategies.fill``) completes them, per field, by
one of these methods:

- ``rule``: a deterministic function of the record and its text (``Rule``): dates, years,
  identifiers, genre cues -- things a parser reads better than a model guesses;
- ``rank``: the embedded model ranks the allowed values (``Judge``): a ``Literal`` field's
  values, or candidate spans of the text (plus "none"), each scored by the model's likelihood
  after one shared prompt, with few-shot examples from development documents. The margin
  between the best and the second option is stored with the field as its confidence;
- ``majority``: the declared most frequent value (``Judge.majority``), the baseline a judge
  must beat;
- ``off``: the value the strategy gave.

``Fill.methods`` names the method of each ``"<type>.<field>"``; a field with a rule and no
entry uses the rule, one with a judge and no entry is ranked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.types import Chunk, Document

METHODS = ("rule", "rank", "majority", "off")


@dataclass(frozen=True)
class Shot:
    """One few-shot example: a text, the subject the question names, the answer."""

    text: str
    subject: str
    answer: str
    #: the options listed with the example (``Judge.listing``)
    options: tuple[str, ...] = ()


#: a rule: (record, chunk, document) -> the field's value (None: empty)
RuleFn = Callable[[dict[str, Any], Chunk, Document], Any]
#: span options of a record: (record, context text) -> candidate values, in text order
OptionsFn = Callable[[dict[str, Any], str], list[str]]


@dataclass(frozen=True)
class Rule:
    """A field a deterministic function fills. ``version`` goes into the run's configuration
    hash: bump it when the function changes what it returns."""

    record_type: str
    field: str
    fn: RuleFn
    version: str = "1"


@dataclass(frozen=True)
class Judge:
    """A field the model fills by ranking its allowed values.

    The prompt is ``header``, the examples, then the item, each block written as::

        Text: <context, clipped to ``width`` characters around the subject>
        Options: a | b | none          (only with ``listing``)
        <ask, with {subject} replaced>  e.g. "Question: What kind of organization is {subject}?\\nAnswer:"

    and each example followed by `` <answer>`` and a blank line. The options are the field's
    ``Literal`` values, or (``options``/``candidates``) spans of the context, plus "none"
    with ``none``. Closed sets are scored as single continuations; spans get the blank line
    after them, so that a span that begins a longer one does not win for free.
    """

    record_type: str
    field: str
    ask: str
    #: the record field that names the item ({subject}); None: the item is the whole document
    subject: str | None = None
    #: span options: a function of (record, context), or a candidate kind found in the context
    options: OptionsFn | None = None
    candidates: str | None = None
    #: the text shown: the record's "evidence" sentence, the "chunk" around the subject, the
    #: chunk's sentences that name the subject ("mentions"), or the document's "head" (the
    #: first ``width`` characters of its main content); clipped to ``width`` characters
    context: str = "evidence"
    width: int = 400
    examples: tuple[Shot, ...] = ()
    #: subtract each option's score after the same examples and a content-free item ("N/A")
    #: (contextual calibration): removes the label prior that the examples induce
    calibrate: bool = False
    #: span fields: "none" is an option; choosing it leaves the field empty
    none: bool = False
    listing: bool = False
    header: str = ""
    #: the most frequent value on the development gold: the baseline (method ``majority``)
    majority: str | None = None
    #: rank only records whose subject passes this test (e.g. not a class phrase)
    applies: Callable[[dict[str, Any]], bool] | None = None

    @property
    def name(self) -> str:
        return f"{self.record_type}.{self.field}"


@dataclass(frozen=True)
class Fill:
    """A schema package's fill declaration (``Domain.fill``)."""

    rules: tuple[Rule, ...] = ()
    judges: tuple[Judge, ...] = ()
    #: ``"<type>.<field>"`` -> one of ``METHODS``
    methods: Mapping[str, str] = field(default_factory=dict)
