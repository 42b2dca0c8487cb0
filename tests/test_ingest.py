from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from pipeline.core.errors import InputError
from pipeline.core.schema import load_schema
from pipeline.ingest import clean_text_spans, read_document, read_documents
from tests.conftest import SEED_000, SEED_003

#: the seeds are biomedical web dumps: PubMed furniture is the biomedical package's cleaning rule
BIOMEDICAL = load_schema("biomedical").domain.cleaning

# Sentences (or their distinctive parts) that hold facts the spec asks for: must survive cleaning.
KEEP = {
    SEED_000: [
        "mRNA CAR T Cell Therapy Receives FDA’s Rare Pediatric Designation to Treat Juvenile Dermatomyositis",
        "Michele B. Kaufman, PharmD, BCGP  |  Issue: March 2025  |  January 30, 2025",
        "says Matthew J. Frigault, MD, clinical director, Cellular Therapy Service, Massachusetts General Hospital",
        "seven CAR T cell therapies are FDA approved for lymphoma, some leukemias and multiple myeloma",
        "planned phase 3 AURORA trial for Descartes-08 for the treatment of adults with generalized myasthenia gravis",
        "It is also in phase 2 clinical development for the treatment of adults with systematic lupus erythematosus.",
        "is a freelance medical writer based in New York City and a pharmacist at New York Presbyterian",
        "1. Cartesian Therapeutics receives FDA rare pediatric disease designation for descartes-08",
        "4. Shapiro SC. CAR-T cells: Are we closer to drug-free remission than we think? The Rheumatologist.",
        "5. Cartesian Therapeutics announces FDA Special Protocol Assessment Agreement for phase 3 AURORA trial",
    ],
    SEED_003: [
        ". 2025 Aug 8;6(8):100676.",
        "doi: 10.1016/j.medj.2025.100676. Epub 2025 Apr 29.",
        "CD19 CAR-T cell therapy in a pediatric patient with MDA5+ dermatomyositis and rapidly progressive",
        "Andrés París-Muñoz et al. Med. .",
        "characterized by rapidly progressive interstitial lung disease (RPILD)",
        "second-generation CD19 CAR-T cell therapy (ARI-0001) in a pediatric patient with severe MDA5+DM-RPILD",
        "No fever or cytokine release syndrome/cell-associated neurotoxicity syndrome was evident.",
        "immunosuppressant-free remission over 11 months after compassionate use",
        "Funding: This work was supported by the Programa Investigo (PI_SEPE_APM) and grants from the ISC-III",
        "Keywords: CAR-T cell; MDA5+; RPILD;",
    ],
}

# Navigation, ads, banners, teasers and footers: must be dropped.
DROP = {
    SEED_000: [
        "Video: Every Case Tells a Story",
        "An official publication of the ACR and the ARP",
        "• Gout and Crystalline Arthritis",
        "ADVERTISEMENT",
        "SCROLL TO CONTINUE",
        "ad goes here:advert-1",
        "Learn More",
        "For more information about CAR T cells, read these articles on our website",
        "Page: 1 2 3 | Single Page",
        "Filed under:",
        "Related Articles",
        "Autoantibodies in Autoimmune Myopathy",
        "During his presentation at EULAR 2024, Georg Schett",
        "Copyright © 2025 by John Wiley & Sons",
        "Cookie Preferences",
    ],
    SEED_003: [
        "Skip to main page content",
        "An official website of the United States government",
        "The .gov means it’s official.",
        "Federal government websites often end in .gov or .mil.",
        "The site is secure.",
        "Access keys NCBI Homepage",
        "PubMed Disclaimer",
        "MeSH terms",
        "LinkOut - more resources",
    ],
}


def squash(text: str) -> str:
    """NFC and single spaces: the seeds hold no-break spaces and decomposed accents."""
    return " ".join(unicodedata.normalize("NFC", text).split())


@pytest.mark.parametrize("path", [SEED_000, SEED_003], ids=["000", "003"])
def test_cleaning_keeps_fact_sentences(path: Path) -> None:
    cleaned = squash(read_document(path, BIOMEDICAL).cleaned_text)
    missing = [s for s in KEEP[path] if squash(s) not in cleaned]
    assert missing == []


@pytest.mark.parametrize("path", [SEED_000, SEED_003], ids=["000", "003"])
def test_cleaning_drops_boilerplate(path: Path) -> None:
    cleaned = squash(read_document(path, BIOMEDICAL).cleaned_text)
    leaked = [s for s in DROP[path] if squash(s) in cleaned]
    assert leaked == []


def test_spans_point_into_original_text() -> None:
    doc = read_document(SEED_000)
    assert doc.text == SEED_000.read_text(encoding="utf-8")
    for span in doc.kept:
        seg = doc.text[span.start : span.end]
        assert seg == seg.strip() and seg
    assert [s.start for s in doc.kept] == sorted(s.start for s in doc.kept)


def test_reference_list_kept_but_menus_dropped() -> None:
    text = "Title of a story\n\n  • Home\n  • News\n  • About\n\nBody sentence one. Body two.\n\nReferences\n\n  1. A paper. J Med. 2020.\n"
    kept = [text[s.start : s.end] for s in clean_text_spans(text)]
    joined = "\n".join(kept)
    assert "• Home" not in joined and "• About" not in joined
    assert "Body sentence one. Body two." in joined
    assert "1. A paper. J Med. 2020." in joined


def test_lists_of_content_are_kept() -> None:
    """Short bullets are navigation only in a run of three or more with no number that no
    line ending in ':' introduces: an adverse-event list or invoice lines are content."""
    events = "Adverse events were:\n- Nausea\n- Fatigue\n- Headache\n"
    invoice = "Invoice 12\n- 2 x Widget\n- 1 x Gadget\n- 3 x Gizmo\n"
    graded = "Events\n- Nausea grade 2\n- Rash grade 1\n- Fever grade 3\n"
    for text in (events, invoice, graded):
        joined = "\n".join(text[s.start : s.end] for s in clean_text_spans(text))
        assert joined.rstrip("\n") == text.rstrip("\n"), text
    two = "Story.\n- Home\n- News\nMore story.\n"  # too short a run to call a menu
    assert "- News" in "\n".join(two[s.start : s.end] for s in clean_text_spans(two))


def test_schema_packages_add_cleaning_rules() -> None:
    text = "Abstract\nA finding.\nMeSH terms\nHumans\nReferences\n1. A paper. 2020.\n"
    generic = "\n".join(text[s.start : s.end] for s in clean_text_spans(text))
    biomedical = "\n".join(text[s.start : s.end] for s in clean_text_spans(text, BIOMEDICAL))
    assert "Humans" in generic and "Humans" not in biomedical
    assert "1. A paper. 2020." in biomedical


def test_widget_label_before_prose_drops_only_the_label() -> None:
    body = (
        "The agency has approved the drug for adults with the disease, the first new option in a decade. "
        "It was studied in two trials with more than a thousand patients in twelve countries."
    )
    text = f"A Title Line Here\n\nSimilar articles\n\n{body}\n\nRelated Articles\nTeaser one\nTeaser two\n"
    joined = "\n".join(text[s.start : s.end] for s in clean_text_spans(text))
    assert body in joined and "Similar articles" not in joined and "Teaser" not in joined


def test_stop_section_ends_at_content_heading() -> None:
    text = "Story body.\nRelated Articles\nTeaser one\nTeaser two\nReferences\n1. Ref one. 2020.\n"
    joined = "\n".join(text[s.start : s.end] for s in clean_text_spans(text))
    assert "Teaser" not in joined
    assert "1. Ref one. 2020." in joined and "Story body." in joined


def test_html_main_content(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    body = " ".join(["KYV-101 is a CD19 CAR T cell therapy developed by Kyverna Therapeutics."] * 4)
    page.write_text(
        "<html><head><title>T</title></head><body><nav><ul><li><a href='/'>Home</a></li>"
        "<li><a href='/n'>News menu link</a></li></ul></nav>"
        f"<article><h1>FDA clears KYV-101 trial</h1><p>{body}</p><p>{body}</p></article>"
        "<footer>Copyright 2025 Example Media. Privacy Policy</footer></body></html>",
        encoding="utf-8",
    )
    doc = read_document(page)
    assert doc.format == "html"
    assert "KYV-101 is a CD19 CAR T cell therapy" in doc.text
    assert "News menu link" not in doc.text and "Privacy Policy" not in doc.text


def test_markdown_is_read(tmp_path: Path) -> None:
    md = tmp_path / "note.md"
    md.write_text("# Heading\n\nARI-0001 targets CD19.\n", encoding="utf-8")
    doc = read_document(md)
    assert doc.format == "markdown" and "ARI-0001 targets CD19." in doc.cleaned_text


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "file is empty"),
        ("binary.txt", b"\x00\x01\x02PK\x03\x04", "binary file"),
        ("table.csv", b"a,b\n", "unsupported file type"),
    ],
)
def test_bad_files_fail_with_one_line_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_documents([path])
    assert message in str(info.value) and "\n" not in str(info.value) and " -- " in str(info.value)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        read_documents([tmp_path / "nope.txt"])


def test_invalid_utf8_replaced_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Sjögren syndrome is treated.".encode("latin-1"))
    doc = read_document(path)
    assert "\ufffd" in doc.text
    assert len(doc.warnings) == 1 and "invalid UTF-8" in doc.warnings[0]


def test_duplicate_doc_ids_rejected(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.txt").write_text("One sentence.", encoding="utf-8")
    (tmp_path / "b" / "x.txt").write_text("Another sentence.", encoding="utf-8")
    with pytest.raises(InputError, match="share the id 'x'"):
        read_documents([tmp_path])
