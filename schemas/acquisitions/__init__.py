"""Company acquisitions and mergers, as reported in business news and press releases.

A user-written schema (plain pydantic, no pipeline imports): one optional ``article``
record per document, and any number of ``deals`` and ``people``. Annotation rules are in
README.md next to this file. Load it with
``--schema schemas/acquisitions/__init__.py:Acquisitions``.
"""

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

EVIDENCE = "a verbatim quote from the text (one sentence or less) that supports this record"


class Article(BaseModel):
    """The news item or press release itself."""

    headline: str = Field(description="the headline as written", json_schema_extra={"key": True})
    published: date | None = Field(default=None, description="the date the article was published")
    publisher: str | None = Field(
        default=None, description="the news outlet, wire or site that published it, as named in the text"
    )
    evidence: str = Field(description=EVIDENCE)


class Deal(BaseModel):
    """One acquisition, merger or purchase of a business or stake."""

    acquirer: str = Field(
        description="the company or investor buying (or offering to buy) the target, as named in the text",
        json_schema_extra={"key": True},
    )
    target: str = Field(
        description="the company, business, asset or stake being bought, as named in the text",
        json_schema_extra={"key": True},
    )
    value: float | None = Field(
        default=None,
        description="the total deal value as a plain number in units of the currency (683000000 for '$683m')",
    )
    currency: str | None = Field(default=None, description="ISO 4217 code of the deal's currency, e.g. USD, EUR")
    price_per_share: float | None = Field(default=None, description="the price paid or offered per target share")
    consideration: Literal["cash", "stock", "cash and stock"] | None = Field(
        default=None, description="what the acquirer pays with"
    )
    status: Literal["proposed", "agreed", "completed", "abandoned"] | None = Field(
        default=None,
        description=(
            "proposed: an offer, bid or talks without a signed agreement; agreed: agreed but not yet closed; "
            "completed: closed; abandoned: withdrawn, rejected or terminated"
        ),
    )
    announced: date | None = Field(default=None, description="the date the deal or offer was announced")
    completed: date | None = Field(default=None, description="the date the deal closed")
    sellers: list[str] = Field(
        default_factory=list,
        description="who sells the target when it is not its own shareholders (a parent company, an owner)",
    )
    acquirer_advisors: list[str] = Field(
        default_factory=list, description="firms advising the acquirer (banks, law firms, PR firms)"
    )
    target_advisors: list[str] = Field(
        default_factory=list, description="firms advising the target or the seller (banks, law firms, PR firms)"
    )
    evidence: str = Field(description=EVIDENCE)


class Person(BaseModel):
    """A named person who speaks about or takes part in a reported deal."""

    name: str = Field(description="the person's full name as written", json_schema_extra={"key": True})
    title: str | None = Field(default=None, description="job title as stated, e.g. 'President and CEO'")
    organization: str | None = Field(default=None, description="the company or body the person speaks for")
    evidence: str = Field(description=EVIDENCE)


class Acquisitions(BaseModel):
    """Everything extracted from one document."""

    article: Article | None = None
    deals: list[Deal] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
