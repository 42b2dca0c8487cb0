"""Drug adverse events: a plain user schema for the pipeline, written as a user would.

One record for each (drug, adverse event) pair that a text reports. The schema has no
prompt and no length bounds. `drug` and `event` are marked as key fields.
`drug_events_nokeys.py` is the same schema without the key marks.
Use it as ``--schema examples/drug_events.py:DrugEvents``.
"""

from pydantic import BaseModel, Field


class DrugEvent(BaseModel):
    """A drug and an adverse event or reaction that the text attributes to it."""

    drug: str = Field(
        description="the drug, as named in the text (brand or generic name)",
        json_schema_extra={"key": True},
    )
    event: str = Field(
        description="the adverse event or reaction the text attributes to the drug",
        json_schema_extra={"key": True},
    )
    dose: str | None = Field(default=None, description="the dose of the drug as stated, e.g. '500 mg twice daily'")
    outcome: str | None = Field(
        default=None, description="what became of the patient or the event, as stated (e.g. recovered, fatal)"
    )
    evidence: str = Field(description="a verbatim quote from the text that supports this record")


class DrugEvents(BaseModel):
    """All drug adverse events reported in one document."""

    events: list[DrugEvent] = Field(default_factory=list)
