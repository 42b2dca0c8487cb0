"""The biomedical vocabularies (drug and disease gazetteers from installed package data), the
tagger's names, and the generic date reader. No network: every source is a pip-installed file."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipeline.candidates import GENERIC_KINDS, find, values
from schemas.biomedical import vocab
from schemas.biomedical.candidates import KINDS
from schemas.biomedical.vocab.gazetteer import Gazetteer


def names(kind: str, text: str) -> list[str]:
    return find({**GENERIC_KINDS, **KINDS}[kind], text, text)


def test_gazetteer_matches_tokens_with_case_rules_and_round_trips(tmp_path: Path) -> None:
    g = Gazetteer.build([("type 2 diabetes", "any"), ("ALS", "exact"), ("Zorvex", "cap"), ("crohn disease", "any")])
    text = "Type-2 diabetes, als and ALS; zorvex or Zorvex; Crohn's disease."
    assert g.find(text) == ["Type-2 diabetes", "ALS", "Zorvex", "Crohn's disease"]  # "als", "zorvex": wrong case
    assert g.find("autoimmune type 2 diabetess") == []  # a longer word is no match
    path = tmp_path / "g.txt"
    g.dump(path)
    again = Gazetteer.load(path)
    assert again.find(text) == g.find(text) and len(again) == len(g)


def test_drug_and_disease_names_come_from_the_vocabularies() -> None:
    text = (
        "Tirzepatide (Zepbound) and metformin were compared in adults with obesity and type 2 diabetes; "
        "tofersen is given for amyotrophic lateral sclerosis, suzetrigine for acute pain, "
        "and montelukast for asthma and high blood pressure."
    )
    drugs = set(vocab.drugs(text))
    assert {"Tirzepatide", "Zepbound", "metformin", "tofersen", "suzetrigine", "montelukast"} <= drugs
    diseases = set(vocab.diseases(text))
    assert {"obesity", "type 2 diabetes", "amyotrophic lateral sclerosis", "acute pain", "asthma"} <= diseases
    assert "high blood pressure" in diseases
    # drug classes are class phrases, and a drug inside a hyphenated modifier is no drug given
    assert vocab.drug_classes("two antipsychotics") == ["antipsychotics"]
    assert vocab.drugs("an immunosuppressant-free remission") == []


def test_umbrella_classes_and_institution_names_are_no_conditions() -> None:
    found = names("condition", "Autoimmune diseases and cancer; the Department of Psychosis Studies; lupus nephritis.")
    assert "lupus nephritis" in found  # (its shorter ends too: the strategy keeps the longest span)
    assert not {"Autoimmune diseases", "cancer", "Psychosis", "Psychosis Studies"} & set(found)


def test_building_a_gazetteer_fetches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh cache folder: the drug gazetteer is built from the installed wheel's data, offline."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the vocabulary tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    vocab.gazetteer.cache_clear()
    try:
        drugs = vocab.gazetteer("drugs")
        assert vocab.cache_path("drugs").is_file() and vocab.cache_path("drugs").parent.parent == tmp_path
        assert drugs.find("metformin and rituximab") == ["metformin", "rituximab"]
    finally:
        vocab.gazetteer.cache_clear()


def test_dates_are_read_in_any_common_written_form_at_their_precision() -> None:
    text = (
        "Published 10 November 2017; cited 1991 Apr; Sept. 01, 2024 (GLOBE NEWSWIRE); "
        "First received: October 1, 2009; issue March 2025; 2025-01-30."
    )
    assert values(GENERIC_KINDS["date"], text) == [
        "2017-11-10",
        "1991-04",
        "2024-09-01",
        "2009-10-01",
        "2025-03",
        "2025-01-30",
    ]
    assert find(GENERIC_KINDS["date"], "It may 2021 be; 12/01/2020") == []  # no month name, no ISO: ambiguous


def test_tagger_finds_company_names_without_a_suffix_and_filters_its_guesses() -> None:
    text = (
        "Eli Lilly and AstraZeneca presented data, and Biogen said its partner Novonexa Therapeutics agreed.\n"
        "Design Randomised controlled trial in colorectal cancer (CRC) patients.\n"
    )
    orgs = names("organization", text)
    assert {"Eli Lilly", "AstraZeneca", "Biogen", "Novonexa Therapeutics"} <= set(orgs)
    assert "CRC" not in orgs  # an acronym the text defines by a lower-case phrase
    assert not any(o == "Bio" or o.startswith("Design") for o in orgs)


def test_people_with_initials_bylines_and_author_lists() -> None:
    text = (
        "Technology | January 28, 2015| Dana Oakes\n"
        "  1. Mira Castell, professor of nephrology1,\n"
        "  2. Anthony S Reed, lecturer in statistics2,\n"
        "By J. A. Smith\n"
        "The FDA said the drug works.\n"
    )
    found = names("person", text)
    assert {"Dana Oakes", "Mira Castell", "Anthony S Reed", "J. A. Smith"} <= set(found)
    assert "The FDA" not in found
