"""PDF input: real PDFs made here from known text (reportlab), read through ``read_document``.

Checked: offsets index the stored text, page spans and ``pages_of`` give the pages of known
sentences, wrapped lines become one paragraph, line-end hyphens are resolved, ligatures spelled
out, running headers/footers/page numbers are in the text but not kept, two columns read in
order, and bad PDFs (encrypted, damaged, not a PDF, image-only, too slow, too many pages) give a
one-line error at the CLI with the database untouched.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.errors import InputError
from pipeline.core.schema import load_schema
from pipeline.core.types import Document, Span
from pipeline.ingest import clean_text_spans, read_document
from pipeline.pdf import MAX_MEMORY, Line, PageLines, PdfProblem, build_text, pages_of, read_pdf, run_limited
from tests.conftest import SEED_003
from tests.pdfmaker import draw_lines, image_only, typeset, wrap
from tests.test_bad_input import assert_one_line_error, counts, fake_model, filled_db, run_cli

__all__ = ["fake_model", "filled_db"]  # fixtures used here

HEADER = "Journal of Renal Reports, Vol. 3"
WIDTH = 212.0
PAGE_1 = [
    "Background",
    "Patients with lupus nephritis in the REGENCY trial received a combined treat~ment with obinutuzumab "
    "and standard therapy. The long-term results were reported in 2025.",
    "Methods",
    "The team gave the twelve patients an anti-~CD19 CAR-T cell product in one infusion.",
]
PAGE_2 = [
    "Results",
    "At week 52, all patients reached a long-~term complete renal response in the obinutuzumab group.",
    "Conclusion",
    "Obinutuzumab is a treatment option for lupus nephritis.",
]


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("~", "")).strip()


def kept_text(doc: Document) -> str:
    return "\n".join(doc.text[s.start : s.end] for s in doc.kept)


@pytest.fixture(scope="module")
def two_pages(tmp_path_factory: pytest.TempPathFactory) -> Document:
    path = tmp_path_factory.mktemp("pdf") / "renal.pdf"
    draw_lines(path, [PAGE_1, PAGE_2], header=HEADER, width=WIDTH)
    return read_document(path)


def test_the_test_pdf_breaks_lines_where_the_checks_need_it() -> None:
    lines = [line for p in PAGE_1 + PAGE_2 for line in wrap(p, WIDTH, "Helvetica", 11)]
    assert any(line.endswith(" treat-") for line in lines)  # a typesetter's hyphen
    assert any(line.endswith(" anti-") for line in lines)  # a word's hyphen before a capital
    assert any(line.endswith(" long-") for line in lines)  # a word's hyphen, the word seen elsewhere
    assert sum(len(wrap(p, WIDTH, "Helvetica", 11)) > 1 for p in PAGE_1 + PAGE_2) >= 3


def test_two_pages_text_offsets_and_page_numbers(two_pages: Document) -> None:
    doc = two_pages
    assert doc.format == "pdf" and doc.doc_id == "renal"
    assert len(doc.pages) == 2
    assert doc.pages[0].end <= doc.pages[1].start and doc.pages[1].end == len(doc.text)
    for n, page in enumerate([PAGE_1, PAGE_2], 1):
        for para in page:
            want = flat(para)
            at = doc.text.find(want)
            assert at >= 0, f"paragraph not found whole: {want!r}"
            assert doc.text[at : at + len(want)] == want
            assert pages_of(doc.pages, at, at + len(want)) == [n]
            assert want in doc.text[doc.pages[n - 1].start : doc.pages[n - 1].end]
            # one paragraph is one line of the text, as in the .txt inputs
            assert doc.text.splitlines().count(want) == 1


def test_hyphens_rejoined_by_rule(two_pages: Document) -> None:
    text = two_pages.text
    assert "combined treatment with" in text and "treat-" not in text  # the typesetter's hyphen goes
    assert "anti-CD19 CAR-T" in text  # a capital after the hyphen: the word's own hyphen stays
    assert text.count("long-term") == 2 and "longterm" not in text  # seen whole elsewhere: it stays


def test_running_header_footer_and_page_numbers_not_kept(two_pages: Document) -> None:
    doc = two_pages
    kept = kept_text(doc)
    for n in (1, 2):
        page = doc.text[doc.pages[n - 1].start : doc.pages[n - 1].end]
        assert HEADER in page and f"Page {n} of 2" in page  # the text stays whole ...
    assert HEADER not in kept and "Page 1 of 2" not in kept and "Page 2 of 2" not in kept  # ... but is not kept
    for para in PAGE_1 + PAGE_2:
        assert flat(para) in kept
    for s in doc.kept:  # kept spans are trimmed, sorted, inside the text
        seg = doc.text[s.start : s.end]
        assert seg == seg.strip() and 0 <= s.start < s.end <= len(doc.text)
    assert [s.start for s in doc.kept] == sorted(s.start for s in doc.kept)


def test_same_line_rules_as_txt(tmp_path: Path) -> None:
    """The .txt cleaner runs on the PDF's text, with the schema package's own line rules: an ad
    line and a menu (generic rules) and PubMed's disclaimer and MeSH section (the biomedical
    domain's) are dropped the same way."""
    cleaning = load_schema("biomedical").domain.cleaning
    body = "Obinutuzumab improved complete renal responses in patients with lupus nephritis at week 52."
    paras = ["ADVERTISEMENT", "• Home", "• Journals", "• Archive", body, "PubMed Disclaimer", "MeSH terms", "Humans"]
    path = draw_lines(tmp_path / "ad.pdf", [paras], footer=None)
    doc = read_document(path, cleaning)
    assert kept_text(doc) == body
    assert kept_text(doc) == "\n".join(doc.text[s.start : s.end] for s in clean_text_spans(doc.text, cleaning))
    txt = tmp_path / "ad.txt"
    txt.write_text("\n".join(paras), encoding="utf-8")
    assert kept_text(read_document(txt, cleaning)) == body
    assert kept_text(read_document(path)).splitlines() == [body, *paras[-3:]]  # without the domain's rules


def test_pages_of() -> None:
    pages = [Span(0, 10), Span(12, 20), Span(22, 22), Span(24, 30)]
    assert pages_of(pages, 0, 5) == [1]
    assert pages_of(pages, 8, 14) == [1, 2]
    assert pages_of(pages, 5, 28) == [1, 2, 4]  # the empty page 3 holds nothing
    assert pages_of(pages, 12, 12) == [2]  # an empty range: the page holding its start
    assert pages_of(pages, 10, 12) == []  # only the separator between pages
    assert pages_of(pages, 29, 40) == [4]
    assert pages_of([], 0, 5) == []


def test_lone_page_numbers_dropped_title_kept(tmp_path: Path) -> None:
    """One page: nothing can repeat, so only a bare page number at the bottom goes."""
    body = ["Lupus Nephritis Update", "Obinutuzumab improved complete renal responses at week 52."]
    doc = read_document(draw_lines(tmp_path / "one.pdf", [body], footer="- {n} -"))
    assert "- 1 -" in doc.text and "- 1 -" not in kept_text(doc)
    assert kept_text(doc).splitlines() == body


def test_header_on_later_pages_only_is_dropped(tmp_path: Path) -> None:
    """Three pages, the header on pages 2 and 3 only: twice of three is enough."""
    path = tmp_path / "three.pdf"
    pages = [
        ["Patients received rituximab before the trial began."],
        ["Twelve patients were enrolled at three centres in Germany."],
        ["The primary end point was a complete renal response at week 52."],
    ]
    draw_lines(path, pages, header=HEADER, footer=None, header_from=2)
    doc = read_document(path)
    assert doc.text.count(HEADER) == 2
    assert HEADER not in kept_text(doc)
    assert all(flat(p[0]) in kept_text(doc) for p in pages)


def test_ligatures_spelled_out(tmp_path: Path) -> None:
    doc = read_document(draw_lines(tmp_path / "lig.pdf", [["The \ufb01rst patients showed \ufb02ares."]], font="Vera"))
    assert "The first patients showed flares." in doc.text
    assert not re.search("[\ufb00-\ufb06]", doc.text)


def test_two_columns_read_column_by_column(tmp_path: Path) -> None:
    """Justified text in two columns over two pages: every paragraph comes out whole and in
    order, the ones that run on into the next column or over the page turn included."""
    paras = [f"Paragraph {i}: " + " ".join(f"word{i}x{k}" for k in range(60)) + "." for i in range(8)]
    doc = read_document(typeset(tmp_path / "cols.pdf", paras, columns=2, header=HEADER))
    assert len(doc.pages) == 2
    lines = doc.text.splitlines()
    assert all(p in lines for p in paras), lines
    at = [doc.text.index(p) for p in paras]
    assert at == sorted(at)
    assert re.findall(r"word\d+x\d+", doc.text) == [f"word{i}x{k}" for i in range(8) for k in range(60)]
    over = [p for p, i in zip(paras, at, strict=True) if pages_of(doc.pages, i, i + len(p)) == [1, 2]]
    assert len(over) == 1  # the paragraph over the page turn: one line of the text, on both pages
    assert HEADER not in kept_text(doc) and over[0] in kept_text(doc).splitlines()


def test_seed_typeset_keeps_what_the_txt_keeps(tmp_path: Path) -> None:
    """Seed 003 typeset (reportlab, justified, running header and page numbers): the PDF keeps the
    same main-content lines as the .txt, and no running line."""
    src = SEED_003.read_text(encoding="utf-8")
    path = typeset(tmp_path / f"{SEED_003.stem}.pdf", src.splitlines(), header=HEADER, font="Vera")
    doc = read_document(path)
    assert doc.doc_id == SEED_003.stem and len(doc.pages) >= 2
    txt = read_document(SEED_003)
    want = [flat(line) for s in txt.kept for line in txt.text[s.start : s.end].splitlines() if line.strip()]
    got = flat(kept_text(doc))
    assert len(want) > 10
    assert [w for w in want if w not in got] == []
    assert HEADER not in got and not re.search(r"Page \d+", got)


# -- bad PDFs ------------------------------------------------------------------------------------


def bad_pdfs(d: Path) -> dict[str, tuple[Path, str, str]]:
    d.mkdir(exist_ok=True)
    encrypted = draw_lines(d / "locked.pdf", [["Secret trial results."]], encrypt="secret")
    (d / "damaged.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)
    (d / "fake.pdf").write_text("this is text, not a PDF\n", encoding="utf-8")
    return {
        "encrypted": (encrypted, "is encrypted (password-protected)", "decrypt it first"),
        "damaged": (d / "damaged.pdf", "is damaged or not a PDF", "repair it"),
        "not a pdf": (d / "fake.pdf", "not a PDF (no %PDF- header)", "pass its text as .txt"),
        "image only": (image_only(d / "scan.pdf", "Patients received rituximab."), "has no text layer", "OCR needed"),
    }


@pytest.mark.parametrize("case", ["encrypted", "damaged", "not a pdf", "image only"])
def test_bad_pdf_one_line_error_database_untouched(
    case: str, tmp_path: Path, filled_db: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, problem, fix = bad_pdfs(tmp_path / "bad")[case]
    with pytest.raises(InputError) as err:
        read_document(path)
    assert "\n" not in str(err.value)
    before = counts(filled_db)
    t0 = time.monotonic()
    code, _out, err_text = run_cli([str(path), "--db", str(filled_db)], capsys, monkeypatch)
    assert time.monotonic() - t0 < 30
    assert_one_line_error(code, err_text, problem, fix)
    assert counts(filled_db) == before


def test_pdf_through_the_cli(tmp_path: Path, db: Path, fake_model: Any, capsys: Any, monkeypatch: Any) -> None:
    path = draw_lines(tmp_path / "renal.pdf", [PAGE_1, PAGE_2], header=HEADER, width=WIDTH)
    code, _out, err = run_cli([str(path), "--db", str(db)], capsys, monkeypatch)
    assert code == 0, err
    assert counts(db)["documents"] == 1


def test_guards_time_pages_and_a_dying_reader(tmp_path: Path) -> None:
    path = draw_lines(tmp_path / "renal.pdf", [PAGE_1, PAGE_2], header=HEADER, width=WIDTH)
    with pytest.raises(InputError, match=r"reading the PDF took over 1e-06 s -- "):
        read_pdf(path, timeout=1e-6)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        run_limited(time.sleep, (30,), timeout=0.5)  # the reader is killed, not waited for
    assert time.monotonic() - t0 < 10
    with pytest.raises(ChildProcessError):
        run_limited(os._exit, (3,), timeout=10)
    with pytest.raises(PdfProblem, match="MemoryError"):
        run_limited(bytearray, (MAX_MEMORY,), timeout=30)  # over the reader's memory limit
    with pytest.raises(InputError, match=r"has too many pages \(2 pages\) -- split it"):
        read_pdf(path, max_pages=1)
    assert len(read_pdf(path).pages) == 2  # a fresh reader after each failure


def test_a_page_without_text_is_a_warning(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "mixed.pdf"
    c = canvas.Canvas(str(path), invariant=1)
    c.drawString(72, 720, "Obinutuzumab improved renal responses.")
    c.showPage()
    c.drawImage(_png(tmp_path), 72, 400, width=300, height=100)
    c.showPage()
    c.save()
    doc = read_document(path)
    assert len(doc.pages) == 2 and doc.pages[1].start == doc.pages[1].end
    assert any("page(s) 2 have no text layer" in w and "OCR" in w for w in doc.warnings), doc.warnings


def _png(d: Path) -> str:
    from PIL import Image

    p = d / "img.png"
    Image.new("RGB", (300, 100), "gray").save(p)
    return str(p)


def test_hyphen_over_a_page_turn() -> None:
    """Lines as PDFium gives them (x0, x1, baselines, size): a paragraph that ends page 1 with
    "treat-" at the right edge goes on at the top of page 2; the page boundary falls inside the
    rejoined word and the running footer of page 1 is not between the halves."""

    def line(text: str, y: float, x1: float = 300.0) -> Line:
        return (text, 72.0, x1, y, y, 10.0, 72.0 + 5.0 * len(text.split()[0]))

    page1 = PageLines(595, 842, 99, [
        line("Lupus nephritis affects many patients with systemic", 700),
        line("lupus. All patients in the REGENCY trial received a", 688),
        line("combined treat-", 676, 300.0),
        line("Page 1", 40, 110.0),
    ])  # fmt: skip
    page2 = PageLines(595, 842, 99, [
        line("ment with obinutuzumab and standard therapy.", 700, 260.0),
        line("Page 2", 40, 110.0),
    ])  # fmt: skip
    built = build_text([page1, page2])
    assert "received a combined treatment with obinutuzumab" in built.text
    at = built.text.index("treatment")
    assert pages_of(built.pages, at, at + len("treatment")) == [1, 2]
    assert built.pages[0].end == built.pages[1].start  # no separator: the word goes on
    assert built.text[built.pages[1].start :].startswith("ment with")
    assert [built.text[s.start : s.end] for s in built.running] == ["Page 1", "Page 2"]
