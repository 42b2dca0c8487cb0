"""Names a document introduces in apposition, and which names it says are one thing.

English writes a second name of one thing next to the first:

- in parentheses: "Fruzaqla (fruquintinib)", "navarixin (SCH 527123, MK-7123)",
  "etranacogene dezaparvovec (Hemgenix, CSL Behring)", "hemophilia B (congenital Factor IX
  deficiency)";
- with a naming phrase: "fruquintinib, under the brand name Elunate", "donanemab, marketed as
  Kisunla", "X, also known as Y";
- as a proper name beside a class phrase: "the dengue vaccine, Qdenga", "Qdenga Dengue Vaccine".

A brand name is often in no vocabulary (new products), but the document itself says what it is
once, then uses it alone ("FDA Approves Takeda's Fruzaqla"). ``Appositions`` reads a whole
document with a base finder (the vocabularies and shapes of a kind) and gives (1) the extra
names learned there, found in every unit afterwards, and (2) the aliases: each second name
mapped to the first one written, so one thing makes one record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from pipeline.core.domain import Finder

#: a parenthesis right after a name: "(fruquintinib)", "(SCH 527123, MK-7123)"
PAREN_AFTER = re.compile(r"\s*\(([^()\n]{1,100})\)")
#: a naming phrase after a name, then the second name
NAMED_AS = re.compile(
    r",?\s+(?:(?:also|formerly|now|previously)\s+)?(?:known|marketed|sold|branded|approved|available)\s+as\s+"
    r"|,?\s+(?:under|with)\s+the\s+(?:brand|trade|proprietary)\s+names?\s+"
    r"|,?\s+(?:brand|trade)\s+names?\s+"
)
#: a proper name in one token: a capitalized word ("Hemgenix") or a code ("MK-7123", "SCH 527123")
PROPER = re.compile(r"(?:[A-Z][a-z][A-Za-z]{2,}|[A-Z][A-Za-z]{0,5}[- ]?\d{2,7}[A-Za-z]?(?:-\d+)?)")
#: a capitalized word right before a parenthesis that holds a known name: "Fruzaqla (fruquintinib)"
PROPER_BEFORE_PAREN = re.compile(r"(?<![\w-])([A-Z][a-z][A-Za-z]{2,})\s*\($")


def _before(text: str, end: int) -> str:
    """The stretch of ``text`` before ``end`` that a name just before it can lie in: matching
    an end-anchored pattern against the whole prefix made a long document quadratic."""
    return text[max(0, end - 256) : end]


@dataclass
class Appositions:
    """What one document says about the names of one kind (see the module docstring)."""

    learned: list[str] = field(default_factory=list)
    #: casefolded second name -> the first name written
    aliases: dict[str, str] = field(default_factory=dict)

    def canonical(self, name: str) -> str:
        seen = {name.casefold()}
        while name.casefold() in self.aliases:
            name = self.aliases[name.casefold()]
            if name.casefold() in seen:
                break
            seen.add(name.casefold())
        return name


def read(
    text: str,
    base: Finder,
    *,
    learn: bool,
    is_class: Callable[[str], bool] | None = None,
    common: frozenset[str] = frozenset(),
    excluded: Callable[[str], bool] = lambda _: False,
) -> Appositions:
    """Read ``text`` (a whole document) with ``base``. ``learn``: proper names in apposition
    become names of the kind too (brands, codes); else only names ``base`` finds are paired.
    ``common``: words never learned alone; ``excluded``: names that are something else (an
    organization in "(Hemgenix, CSL Behring)")."""
    known = base(text)
    folded = {k.casefold() for k in known}
    out = Appositions()

    def learnable(name: str) -> bool:
        return learn and PROPER.fullmatch(name) is not None and name.casefold() not in common and not excluded(name)

    def pair(first: str, second: str) -> None:
        second = second.strip(" .;:")
        if not second or second.casefold() == first.casefold():
            return
        if second.casefold() in folded or learnable(second):
            if second.casefold() not in folded:
                out.learned.append(second)
                folded.add(second.casefold())
            out.aliases.setdefault(second.casefold(), first)

    for name in sorted(known, key=len, reverse=True):
        for m in _mentions(name, text):
            if is_class is not None and is_class(name):
                after = AFTER_CLASS.match(text, m.end())
                if after:  # "the dengue vaccine, Qdenga"
                    _learn_only(after.group(1), learnable, out, folded)
                before = re.search(r"(?<![\w-])([A-Z][a-z][A-Za-z]{2,})[ \t]+$", _before(text, m.start()))
                if before and _occurs(before.group(1), text) >= 2:  # "Qdenga Dengue Vaccine"
                    _learn_only(before.group(1), learnable, out, folded)
                continue
            paren = PAREN_AFTER.match(text, m.end())
            if paren:
                for item in re.split(r"[,;]\s*", paren.group(1)):
                    pair(name, item)
            named = NAMED_AS.match(text, m.end())
            if named:
                second = SECOND_NAME.match(text, named.end())
                if second:
                    pair(name, second.group(0))
            before = PROPER_BEFORE_PAREN.search(_before(text, m.start()))
            if before and learnable(before.group(1)):
                first = before.group(1)
                if first.casefold() not in folded:
                    out.learned.append(first)
                    folded.add(first.casefold())
                out.aliases.setdefault(name.casefold(), first)
    _spelling_variants(text, [*known, *out.learned], out)
    return out


def spelling(name: str) -> str:
    """A name's spelling key: case, hyphens, spaces and a plural -s do not tell two names apart."""
    words = re.sub(r"[\s\-‐-―]+", " ", name.casefold()).strip().split(" ")
    words[-1] = re.sub(r"(?<=[a-z]{3})s$", "", words[-1])
    return " ".join(words)


def _spelling_variants(text: str, names: list[str], out: Appositions) -> None:
    """Names written two ways ("ANCA Associated Vasculitis", "ANCA-Associated Vasculitis", "CAR T
    cells", "CAR-T cell") are one name: the later spellings are aliases of the first in the text."""
    first: dict[str, str] = {}
    folded = text.casefold()  # once: folded per name, a long document was quadratic
    for name in sorted(names, key=lambda n: (folded.find(n.casefold()) % (len(text) + 1), n)):
        key = spelling(name)
        if key in first and first[key].casefold() != name.casefold():
            out.aliases.setdefault(name.casefold(), first[key])
        first.setdefault(key, name)


#: "the dengue vaccine, Qdenga": a proper name after a class phrase and a comma
AFTER_CLASS = re.compile(r",\s+([A-Z][\w-]+)(?=[\s.,;:]|$)")
#: the name after "known as", "named", ...
SECOND_NAME = re.compile(r"[A-Z][\w-]+(?: \d+)?")


def _mentions(name: str, text: str) -> Iterator[re.Match[str]]:
    """Where ``name`` occurs in ``text`` as a word, any case. Each place is found with a plain
    search in the lower-cased text and matched there: a case-insensitive pattern tried at every
    position of the text, per name, was most of a long document's apposition reading."""
    lower = _lower(text)
    if len(lower) != len(text):  # a letter whose lower case is longer: offsets differ
        yield from re.finditer(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE)
        return
    pattern = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])", re.IGNORECASE)
    needle = name.lower()
    at = lower.find(needle)
    while at >= 0:
        m = pattern.match(text, at)
        if m is not None:
            yield m
            at = lower.find(needle, m.end())
        else:
            at = lower.find(needle, at + 1)


@lru_cache(maxsize=16)
def _lower(text: str) -> str:
    return text.lower()


@lru_cache(maxsize=4096)
def _occurs(name: str, text: str) -> int:
    """How often ``name`` occurs in ``text`` as a word (once per name and document: counted per
    mention, a long document was quadratic)."""
    return len(re.findall(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text))


def _learn_only(name: str, learnable: Callable[[str], bool], out: Appositions, folded: set[str]) -> None:
    if name.casefold() not in folded and learnable(name):
        out.learned.append(name)
        folded.add(name.casefold())


def finder(base: Finder, learned: list[str]) -> Finder:
    """``base`` plus the document's learned names, in text order."""
    if not learned:
        return base
    pattern = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in learned) + r")(?![\w-])")

    def find(text: str) -> list[str]:
        found = base(text)
        seen = {f.casefold() for f in found}
        extra = [m.group(0) for m in pattern.finditer(text) if m.group(0).casefold() not in seen]
        if not extra:
            return found
        items = list(dict.fromkeys([*found, *extra]))
        return sorted(items, key=lambda c: text.find(c) if c in text else len(text))

    return find
