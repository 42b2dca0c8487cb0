"""Drug adverse events without key marks: the same user schema as `drug_events.py`, but no
field carries ``json_schema_extra={"key": True}``.

It exercises what the pipeline does when a user marks no keys: pick sensible defaults and
warn. Use it as ``--schema examples/drug_events_nokeys.py:DrugEvents``.
"""

from pydantic import BaseModel, Field


class DrugEvent(BaseModel):
    """A drug and an adverse event or reaction that the text attributes to it."""

    drug: str = Field(description="the drug, as named in the text (brand or generic name)")
    event: str = Field(description="the adverse event or reaction the text attributes to the drug")
    dose: str | None = Field(default=None, description="the dose of the drug as stated, e.g. '500 mg twice daily'")
    outcome: str | None = Field(
        default=None, description="what became of the patient or the event, as stated (e.g. recovered, fatal)"
    )
    evidence: str = Field(description="a verbatim quote from the text that supports this record")


class DrugEvents(BaseModel):
    """All drug adverse events reported in one document."""

    events: list[DrugEvent] = Field(default_factory=list)
