"""Dictionary lookup of a term list over the word tokens of a text.

Text and terms are split into word tokens (runs of letters and digits). Between two tokens of
one name the text may put a space, a hyphen, a slash or an apostrophe, so "ANCA-associated"
matches "anca associated" and "Alzheimer's disease" matches "Alzheimer disease" (a possessive
"s" is no token). A term matches a run of tokens in one of three ways:

- ``any``: any case (most names: "type 2 diabetes", "tirzepatide");
- ``exact``: the text's case exactly (acronyms and codes: "ALS" is not "als");
- ``cap``: any case, but the text's first letter is a capital (brand names).

The longest match wins, scanning left to right; matches do not overlap. A match is the text's
own characters, so every hit is a span of the document.

A gazetteer is written to and read from a plain text file (``dump``/``load``): one term key a
line, prefixed by its case class, so a process loads it in a fraction of a second instead of
rebuilding it from the vocabulary packages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

Case = Literal["any", "exact", "cap"]

TOKEN = re.compile(r"[^\W_]+")
#: what may separate two tokens of one name: a space, hyphen, slash or apostrophe (at most two)
GAP = re.compile(r"(?:['’]s)?[ \-‐-―/'’]{0,2}")
#: "Crohn's disease" == "Crohn disease": the possessive s is no token
POSSESSIVE_S = re.compile(r"(?<=['’])s\b")
#: a veto on one match: (text, start, end, number of tokens) -> keep it?
Keep = Callable[[str, int, int, int], bool]

_PREFIX = {"any": "a", "exact": "e", "cap": "c"}


def fold(s: str) -> str:
    return unicodedata.normalize("NFKC", s).casefold()


def tokens(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in TOKEN.finditer(text) if not POSSESSIVE_S.match(text, m.start())]


class Gazetteer:
    """A set of terms, looked up over word tokens (see the module docstring)."""

    def __init__(self) -> None:
        self.any: set[str] = set()
        self.exact: set[str] = set()
        self.cap: set[str] = set()
        self.max_tokens = 1
        #: first token of a term -> the most tokens a term starting with it has (folded, and as
        #: written for exact terms): a text token that starts no term is skipped at once
        self._first: dict[str, int] = {}
        self._first_exact: dict[str, int] = {}

    def _index(self) -> None:
        self._first.clear()
        self._first_exact.clear()
        for keys, first in ((self.any, self._first), (self.cap, self._first), (self.exact, self._first_exact)):
            for key in keys:
                head, _, rest = key.partition(" ")
                n = rest.count(" ") + 2 if rest else 1
                if first.get(head, 0) < n:
                    first[head] = n

    @classmethod
    def build(
        cls,
        terms: Iterable[tuple[str, Case]],
        max_tokens: int = 8,
        plurals: bool = True,
        stop: frozenset[str] = frozenset(),
    ) -> Gazetteer:
        """From (surface, case) pairs; ``plurals`` adds the last token's +s/-s variant to
        any-case terms ("autoimmune disease" also matches "autoimmune diseases"), unless the
        variant is one word of ``stop`` ("dids" gives no "did")."""
        g = cls()
        for surface, case in terms:
            surface = unicodedata.normalize("NFKC", surface)
            toks = [surface[s:e] for s, e in tokens(surface)]
            if not toks or len(toks) > max_tokens:
                continue
            if case == "exact":
                g.exact.add(" ".join(toks))
            elif case == "cap":
                g.cap.add(" ".join(fold(t) for t in toks))
            else:
                folded = [fold(t) for t in toks]
                g.any.add(" ".join(folded))
                last = folded[-1]
                variant = [*folded[:-1], last[:-1] if last.endswith("s") else last + "s"]
                if plurals and len(last) > 3 and last.isalpha() and not (len(variant) == 1 and variant[0] in stop):
                    g.any.add(" ".join(variant))
            g.max_tokens = max(g.max_tokens, len(toks))
        g._index()
        return g

    def __len__(self) -> int:
        return len(self.any) + len(self.exact) + len(self.cap)

    def __contains__(self, name: str) -> bool:
        """Is ``name`` (all of it) a term?"""
        return any(e - s == len(name) for s, e in self.spans(name))

    def dump(self, path: Path) -> None:
        """Write the gazetteer to ``path`` (atomically: a reader never sees half a file)."""
        tmp = path.with_name(f"{path.name}.{id(self)}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(f"max\t{self.max_tokens}\n")
            for case, keys in (("any", self.any), ("exact", self.exact), ("cap", self.cap)):
                f.writelines(f"{_PREFIX[case]}\t{k}\n" for k in sorted(keys))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Gazetteer:
        g = cls()
        head, _, body = path.read_text(encoding="utf-8").partition("\n")
        if not head.startswith("max\t"):
            raise ValueError(f"{path} is not a gazetteer file")
        g.max_tokens = int(head[4:])
        lines = body.split("\n")
        g.any = {line[2:] for line in lines if line[:2] == "a\t"}
        g.exact = {line[2:] for line in lines if line[:2] == "e\t"}
        g.cap = {line[2:] for line in lines if line[:2] == "c\t"}
        g._index()
        return g

    def spans(self, text: str, keep: Keep | None = None) -> Iterator[tuple[int, int]]:
        """Longest matches, left to right, not overlapping; ``keep`` may veto one."""
        toks = tokens(text)
        words = [text[s:e] for s, e in toks]
        folded = [fold(w) for w in words]
        i = 0
        while i < len(toks):
            hit = 0
            longest = max(self._first.get(folded[i], 0), self._first_exact.get(words[i], 0))
            if not longest:
                i += 1
                continue
            # tokens of one term are adjacent: only spaces, hyphens, slashes, apostrophes between
            n_max = 1
            while (
                n_max < longest
                and i + n_max < len(toks)
                and GAP.fullmatch(text[toks[i + n_max - 1][1] : toks[i + n_max][0]])
            ):
                n_max += 1
            for n in range(n_max, 0, -1):
                key = " ".join(folded[i : i + n])
                if (
                    key in self.any
                    or " ".join(words[i : i + n]) in self.exact
                    or (key in self.cap and words[i][:1].isupper())
                ):
                    start, end = toks[i][0], toks[i + n - 1][1]
                    if keep is None or keep(text, start, end, n):
                        hit = n
                        break
            if hit:
                yield toks[i][0], toks[i + hit - 1][1]
                i += hit
            else:
                i += 1

    def find(self, text: str, keep: Keep | None = None) -> list[str]:
        """The matched spans' text, first occurrence of each (case-insensitive), in text order."""
        out: list[str] = []
        seen: set[str] = set()
        for s, e in self.spans(text, keep):
            surface = text[s:e]
            if surface.casefold() not in seen:
                seen.add(surface.casefold())
                out.append(surface)
        return out
