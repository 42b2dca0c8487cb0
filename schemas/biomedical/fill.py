"""How the biomedical schema completes its records after ``rules`` built them (``DOMAIN.fill``).

``rules`` finds names; this declares, per field, how the rest is filled (``pipeline.core.fill``):

- parsers (rules): the publication date (which date of the document's head is it), citation
  years, the article's DOI and PMID; genre cues for ``article_type``; numbered affiliation
  markers for ``people.affiliation``; tense and wording cues for ``trials.status``;
  safety words for ``outcomes.kind``;
- the embedded model ranks (judges): organization kinds, a person's role among the phrases in
  apposition to the name, the developer or sponsor among the organizations of the chunk, the
  condition of a trial, event or outcome among the condition spans, a therapy's modality
  among its class phrases. Few-shot examples are in ``prompts/fill/<type>.<field>.json``,
  written from the development documents (``evals/gold`` and ``evals/dev``).

``METHODS`` is what was measured to win on the seed and dev sets (README, "Filling fields");
``judges`` and ``rules`` also hold the losers, for measuring again.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.candidates import find, iso_dates, phrases
from pipeline.core.fill import Fill, Judge, Rule, Shot
from pipeline.core.types import Chunk, Document
from schemas.biomedical.candidates import KINDS

PROMPTS = Path(__file__).parent / "prompts" / "fill"


@cache
def shots(name: str) -> tuple[Shot, ...]:
    """The few-shot examples of one field (``prompts/fill/<name>.json``)."""
    path = PROMPTS / f"{name}.json"
    if not path.is_file():
        return ()
    data = json.loads(path.read_text(encoding="utf-8"))
    return tuple(Shot(e["text"], e.get("subject", ""), e["answer"], tuple(e.get("options", ()))) for e in data)


# -- the document's head ------------------------------------------------------------------------

#: lines of the main content read for the publication date and the genre
HEAD_LINES = 14
HEAD_CHARS = 2500


def head_lines(doc: Document) -> list[str]:
    """The first lines of the document's main content (boilerplate dropped), stripped."""
    out: list[str] = []
    for span in doc.kept:
        for line in doc.text[span.start : span.end].split("\n"):
            if line.strip():
                out.append(line.strip())
            if len(out) >= HEAD_LINES:
                return out
    return out


def head(doc: Document) -> str:
    return "\n".join(head_lines(doc))[:HEAD_CHARS]


# -- article: publication date, identifiers, genre ----------------------------------------------

#: a date on such a line is not the publication date
NOT_PUBLISHED = re.compile(
    r"\b(?:updated?|revised|modified|accessed|verified|retrieved|last\b|accepted|submitted|received for review)",
    re.IGNORECASE,
)
#: a line that says which date it gives
PUBLISHED = re.compile(r"\b(?:published|posted|epub|first (?:received|posted|published)|date)\b", re.IGNORECASE)
REFERENCE_LINE = re.compile(r"^\s*\d{1,3}\.\s")


def _precision(iso: str) -> int:
    return iso.count("-")


def published(record: dict[str, Any], chunk: Chunk, doc: Document) -> str | None:
    """The publication date: in the head of the main content, the first line with a date that
    says "published" (or "posted", "Epub", "first received"), else the first line with a date
    that is not an update, revision or access date; on that line, its most precise date."""
    dated = [
        (line, found)
        for line in head_lines(doc)
        if not REFERENCE_LINE.match(line) and not NOT_PUBLISHED.search(line) and (found := iso_dates(line))
    ]
    if not dated:
        return None
    line, found = next(((ln, f) for ln, f in dated if PUBLISHED.search(ln)), dated[0])
    if PUBLISHED.search(line):  # "Published 07 October 2013": the date after the cue
        after = iso_dates(line[PUBLISHED.search(line).end() :])  # type: ignore[union-attr]
        found = after or found
    return max(found, key=_precision)


DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)")
DOI_CUE = re.compile(r"(?:\bdoi:?\s*|doi\.org/)(10\.\d{4,9}/[^\s\"<>]+)", re.IGNORECASE)


def doi(record: dict[str, Any], chunk: Chunk, doc: Document) -> str | None:
    """The article's DOI: the first DOI labelled as one ("doi:", "doi.org/") in the head of the
    main content, else the strategy's value."""
    m = DOI_CUE.search(head(doc))
    if m is None:
        return record.get("doi")
    return m.group(1).rstrip(".,;)")


PMID = re.compile(r"\bPMID:?\s*(\d{1,10})\b")


def pmid(record: dict[str, Any], chunk: Chunk, doc: Document) -> str | None:
    """The article's PubMed id: "PMID: 12345678" in the main content, before any reference list."""
    text = doc.cleaned_text
    refs = re.search(r"(?im)^\s*(?:references|bibliography)\s*$", text)
    m = PMID.search(text[: refs.start()] if refs else text)
    return m.group(1) if m else None


#: genre cues, tried in this order on the head of the main content (and the whole text for the
#: wire services' and registries' labels); the first that matches decides
GENRES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "trial_record",
        re.compile(
            r"ClinicalTrials\.gov Identifier|Registration Number\s*\n\s*NCT|\bStudy Type\b|\bLead Sponsor\b|"
            r"\bRecruitment Status\b|\bEstimated (?:Study )?(?:Primary )?Completion\b|\bEligibility Criteria\b",
            re.IGNORECASE,
        ),
    ),
    ("meeting_abstract", re.compile(r"\bAbstract Number\b|\bMeeting Abstracts?\b|\bPoster (?:Number|Session)\b")),
    (
        "press_release",
        re.compile(
            r"\((?:GLOBE NEWSWIRE|BUSINESS WIRE|PRNewswire|PR Newswire|ACCESSWIRE)\)|/PRNewswire/|\bPRESS RELEASE\b"
        ),
    ),
    ("case_report", re.compile(r"^\s*Case Reports?\s*$|\bcase report\b", re.IGNORECASE | re.MULTILINE)),
    ("review", re.compile(r"^\s*(?:Review|Systematic Review|Meta-Analysis)\s*$", re.IGNORECASE | re.MULTILINE)),
    (
        "research_abstract",
        re.compile(
            r"^\s*Abstract\s*$|\b(?:Background|Objectives?|Methods|Results|Conclusions?):\s",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
)


def article_type(record: dict[str, Any], chunk: Chunk, doc: Document) -> str:
    """The genre from layout and wording cues of the head: a registry's field labels, a meeting
    abstract's number, a wire service's dateline, a case-report or review label, an abstract's
    section heads; otherwise news."""
    text = head(doc)
    for genre, cue in GENRES:
        if cue.search(text):
            return genre
    return "news"


YEAR = re.compile(r"(?<![\d./-])(1[89]\d\d|20\d\d)(?![\d/])")


def citation_year(record: dict[str, Any], chunk: Chunk, doc: Document) -> int | None:
    """The year of a reference-list item: the first year written after its title (a year in
    the title is part of the title), else the first in the item."""
    line = str(record.get("evidence") or "")
    title = str(record.get("title") or "")
    at = line.find(title) if title else -1
    m = YEAR.search(line, at + len(title)) if at >= 0 else None
    m = m or YEAR.search(line)
    return int(m.group(1)) if m else None


# -- people: affiliation markers and roles ------------------------------------------------------

#: "1University College London, London, United Kingdom, 2University ..." or a list item "1. 1Unit for ..."
AFFILIATION_ITEM = re.compile(r"(?:^|(?<=, )|(?<=\. ))(\d{1,2})([A-Z][^\n]*?)(?=, \d{1,2}[A-Z]|\n|$)", re.MULTILINE)
#: sub-units of an organization: the affiliation is the organization they belong to
SUBUNIT = re.compile(
    r"^(?:Department|Dept\.?|Division|Unit|Centre|Center|Section|Laboratory|Lab|Faculty|School|Program|Programme)\b"
)
#: the place part of an affiliation: a city, a country, a postcode
PLACE = re.compile(r"^(?:[A-Z][a-z]+(?: [A-Z][a-z]+)?|[A-Z]{2,3}|[A-Z]{1,2}\d[\w ]*|United \w+|USA|UK)$")


@cache
def _affiliation_list(text: str) -> dict[str, str]:
    """{marker: affiliation} of a numbered affiliation list (three or more markers)."""
    items: dict[str, str] = {}
    for m in AFFILIATION_ITEM.finditer(text):
        items.setdefault(m.group(1), m.group(2))
    if len(items) < 3:
        return {}
    out = {}
    for marker, item in items.items():
        parts = [p.strip(" .;") for p in item.split(", ") if p.strip(" .;")]
        named = [p for p in parts if not PLACE.match(p)]
        whole = [p for p in named if not SUBUNIT.match(p)]
        out[marker] = (whole or named or parts)[0]
    return out


def affiliation(record: dict[str, Any], chunk: Chunk, doc: Document) -> str | None:
    """A person of a numbered author list takes the affiliation their first marker points to
    ("Maria Leandro1, ..." and "1University College London, ..."); else the strategy's value."""
    name = str(record.get("name") or "")
    items = _affiliation_list(doc.text) if name else {}
    if not items:
        return record.get("affiliation")
    for m in re.finditer(re.escape(name), doc.text):
        rest = doc.text[m.end() : m.end() + 200].split("\n", 1)[0]
        rest = re.split(r",\s+(?=[A-Z][^\W\d_]+ [A-Z])| and (?=[A-Z])", rest, maxsplit=1)[0]
        marker = re.search(r"(?<=[^\W\d_])(\d{1,2})(?=[,\s*]|$)|^(\d{1,2})", rest)
        if marker:
            found = items.get(marker.group(1) or marker.group(2))
            if found:
                return found
    return record.get("affiliation")


CREDENTIAL = re.compile(r"^(?:,?\s*(?:[A-Z][A-Za-z]{0,4}\.?){1,3}\b\.?)+")
ROLE_STOP = re.compile(r"\s*(?:;|\.\s|\.$|”|\"|\bsaid\b|\bsays\b|\badds\b|\||\(|$)")
#: the next names of an author list ("Ruth Pepper2", "Davide Germano11 and Claire Roddie1"), not a role
NAME_LIKE = re.compile(r"(?:\d+|(?:[A-Z][\w’'-]+ ){1,3}[A-Z][\w’'-]+\d+(?: and .*)?|\d+ and .*)")


def role_options(record: dict[str, Any], text: str) -> list[str]:
    """What a person's role may be: the phrase in apposition after the name (and credentials),
    its comma-separated parts and their cuts before " at "/" of "/" and ", the title written
    before the name ("Kyverna's CEO Peter Maag"); where the text describes the name by no such
    phrase (a byline, an author list), "author"."""
    name = str(record.get("name") or "")
    out: list[str] = []
    at = text.find(name) if name else -1
    if at >= 0:
        rest = text[at + len(name) :]
        for cred in find(KINDS["credentials"], rest[:60]):
            if rest.lstrip(", ").startswith(cred.lstrip(", ")):
                rest = rest.lstrip(", ")[len(cred.lstrip(", ")) :]
        rest = re.sub(r"^(?:,?\s*(?:M\.D\.|Ph\.D\.|Pharm\.D\.|[A-Z][A-Za-z]{1,5}))+(?=,)", "", rest)
        stop = ROLE_STOP.search(rest.lstrip(", "))
        apposition = rest.lstrip(", ")[: stop.start() if stop else None]
        parts = [p.strip(" ,") for p in apposition.split(", ")]
        for i, part in enumerate(parts[:3]):
            part = re.sub(r"(?<=[a-z])\d{1,2}$", "", part).strip()  # an affiliation marker
            if (
                not part
                or NAME_LIKE.fullmatch(part)
                or len(part.split()) > 20
                or re.match(r"(?:and|who|et al)\b", part)
            ):
                break
            if i and not re.match(r"[a-z]|(?:Head|Chief|Vice|President|Director|Executive)\b", part):
                break  # an organization or place after the role
            out.append(part)
            for cut in (" at ", " of the ", " of ", " in ", " and "):
                if cut in part:
                    out.append(part.split(cut)[0])
        before = text[:at]
        m = re.search(r"(?:[A-Z][\w’']+(?:’s|'s) )?([A-Za-z ]{2,40}?)\s*$", before)
        if m and m.group(0).strip()[:1].isupper() and len(m.group(0).split()) <= 4:
            out.append(m.group(0).strip())
    if not out:  # a name the text describes by no phrase: a byline or an author list
        out.append("author")
    return list(dict.fromkeys(o for o in out if o))


# -- therapies: modality ------------------------------------------------------------------------

MODALITY_HEAD = re.compile(
    r"\b(?:therap(?:y|ies)|vaccines?|cells?|agents?|antibod(?:y|ies)|inhibitors?|antagonists?|agonists?|"
    r"drugs?|medications?|treatments?|valves?|devices?|molecules?|constructs?|biologics?)$",
    re.IGNORECASE,
)


def modality_options(record: dict[str, Any], text: str) -> list[str]:
    """Class phrases of the context (ending in therapy, vaccine, cells, antibody, inhibitor,
    device, ...), each at its fullest extent (a phrase inside a longer one is not offered: the
    model's likelihood favours short spans): what kind of therapy a named product is."""
    name = str(record.get("name") or "").casefold()
    is_class = KINDS["therapy"].is_class
    found = [p for p in phrases(text) if MODALITY_HEAD.search(p) and len(p.split()) >= 2]
    found += [t for t in find(KINDS["therapy"], text) if is_class is not None and is_class(t)]
    found = [p for p in dict.fromkeys(found) if name not in p.casefold()]
    return [p for p in found if not any(p != q and p.casefold() in q.casefold() for q in found)]


def party_options(record: dict[str, Any], text: str) -> list[str]:
    """Organizations of the context that may develop or sponsor a therapy: not regulators."""
    regulators = {a.casefold() for a in find(KINDS["agency"], text)}
    return [o for o in find(KINDS["organization"], text) if o.casefold() not in regulators]


def is_named_product(record: dict[str, Any]) -> bool:
    """A therapy record named by a product or code, not by a class phrase (that has no modality)."""
    is_class = KINDS["therapy"].is_class
    name = str(record.get("name") or "")
    return bool(name) and not (is_class is not None and is_class(name)) and not MODALITY_HEAD.search(name)


# -- trials and outcomes: cue rules --------------------------------------------------------------

STATUS_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "completed",
        re.compile(
            r"\b(?:completed|completion of|terminated|final (?:analysis|results)|met (?:its|the) primary|"
            r"(?:showed|demonstrated|found) that|results (?:from|of) the)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "planned",
        re.compile(
            r"\b(?:will (?:be|test|evaluate|enroll|begin|start|launch|assess|investigate)|plans? to|planned|upcoming|"
            r"(?:expected|intends?|aims?) to (?:begin|start|initiate|launch|enroll)|go-ahead to|to (?:launch|initiate|begin))\b",
            re.IGNORECASE,
        ),
    ),
    (
        "ongoing",
        re.compile(
            r"\b(?:ongoing|underway|recruiting|enrolling|is being (?:evaluated|tested|studied)|currently|interim|"
            r"is evaluating|are being)\b",
            re.IGNORECASE,
        ),
    ),
)


def trial_status(record: dict[str, Any], chunk: Chunk, doc: Document) -> str | None:
    """The status a trial's sentence states by its wording: completed (results, completion,
    termination), planned (will, plans to, upcoming), ongoing (ongoing, recruiting, interim)."""
    text = str(record.get("evidence") or "")
    for status, cue in STATUS_CUES:
        if cue.search(text):
            return status
    return None


SAFETY = re.compile(
    r"\b(?:adverse|safety|safe|toxicit\w*|tolerab\w*|side effects?|cytokine release|neurotoxicity|ICANS|CRS|"
    r"deaths?|died|serious|infections?|grade [1-5]|hospitali[sz]ation for|discontinu\w+ due|ARIA)\b",
    re.IGNORECASE,
)


def outcome_kind(record: dict[str, Any], chunk: Chunk, doc: Document) -> str:
    """Safety when the finding speaks of adverse events, toxicity, tolerability or deaths;
    otherwise efficacy."""
    return "safety" if SAFETY.search(str(record.get("finding") or "")) else "efficacy"


# -- the declaration ------------------------------------------------------------------------------

ORG_KIND = Judge(
    "organizations",
    "kind",
    "Question: What kind of organization is {subject}?\nAnswer:",
    subject="name",
    examples=shots("organizations.kind"),
    calibrate=True,
    majority="hospital",
)
ARTICLE_TYPE = Judge(
    "article",
    "article_type",
    "Question: What kind of document is this?\nAnswer:",
    context="head",
    width=600,
    examples=shots("article.article_type"),
    calibrate=True,
    majority="news",
)
TRIAL_STATUS = Judge(
    "trials",
    "status",
    "Question: Is the trial of {subject} planned, ongoing or completed?\nAnswer:",
    subject="therapy",
    examples=shots("trials.status"),
    calibrate=True,
    majority="ongoing",
)
OUTCOME_KIND = Judge(
    "outcomes",
    "kind",
    "Question: Is this finding about efficacy or safety?\nAnswer:",
    subject="finding",
    examples=shots("outcomes.kind"),
    calibrate=True,
    majority="efficacy",
)
ROLE = Judge(
    "people",
    "role",
    "Person: {subject}\nRole:",
    subject="name",
    options=role_options,
    none=True,
    listing=True,
)
DEVELOPER = Judge(
    "therapies",
    "developer",
    "Question: Which company or institution develops {subject}?\nAnswer:",
    subject="name",
    options=party_options,
    context="mentions",
    width=600,
    examples=shots("therapies.developer"),
    none=True,
    applies=is_named_product,
)
SPONSOR = Judge(
    "trials",
    "sponsor",
    "Question: Who sponsors the trial of {subject}?\nAnswer:",
    subject="therapy",
    options=party_options,
    context="mentions",
    width=600,
    examples=shots("therapies.developer"),
    none=True,
)
TRIAL_INDICATION = Judge(
    "trials", "indication", "Trial of: {subject}\nCondition:", subject="therapy", candidates="condition"
)
EVENT_INDICATION = Judge(
    "regulatory_events", "indication", "Therapy: {subject}\nCondition:", subject="therapy", candidates="condition"
)
OUTCOME_CONDITION = Judge(
    "outcomes",
    "condition",
    "Finding: {subject}\nCondition:",
    subject="finding",
    candidates="condition",
    context="chunk",
)
MODALITY = Judge(
    "therapies",
    "modality",
    "Question: What kind of therapy is {subject}?\nAnswer:",
    subject="name",
    options=modality_options,
    examples=shots("therapies.modality"),
    none=True,
    applies=is_named_product,
)

FILL = Fill(
    rules=(
        Rule("article", "published", published),
        Rule("article", "doi", doi),
        Rule("article", "pmid", pmid),
        Rule("article", "article_type", article_type),
        Rule("citations", "year", citation_year),
        Rule("people", "affiliation", affiliation),
        Rule("trials", "status", trial_status),
        Rule("outcomes", "kind", outcome_kind),
    ),
    judges=(
        ORG_KIND,
        ARTICLE_TYPE,
        TRIAL_STATUS,
        OUTCOME_KIND,
        ROLE,
        DEVELOPER,
        SPONSOR,
        TRIAL_INDICATION,
        EVENT_INDICATION,
        OUTCOME_CONDITION,
        MODALITY,
    ),
    # measured on the seed and dev sets (README, "Filling fields"): the rules kept their value
    # there, so these judges are not asked by default
    methods={"trials.indication": "off", "regulatory_events.indication": "off", "outcomes.condition": "off"},
)
