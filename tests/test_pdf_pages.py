"""Page-aware provenance end to end: a two-page PDF made here and a .txt, extracted by the real
``run_extract`` (a fake model that answers each chunk with the records it holds), then ``page``
and ``pages`` in the views, in ``pipeline export`` (csv, jsonl, parquet) and in the report.

The pages expected are known by construction: the test puts each sentence on its page, and one
sentence runs on from the foot of page 1 to the top of page 2 (one line of the text, the page
boundary inside it). A .txt document's records have no page (NULL).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
from openai.types.chat import ChatCompletion

from pipeline.batch import ExtractConfig, RunSummary, run_extract
from pipeline.core.types import Span
from pipeline.export import run_export
from pipeline.ingest import read_document
from pipeline.pdf import PageMap, pages_of
from pipeline.report import build_report, page_label
from pipeline.sql import list_tables, run_query
from pipeline.store import Store
from pipeline.store.views import page_sql
from tests.conftest import FakeProvider, completion
from tests.pdfmaker import draw_lines, wrap
from tests.test_report import browser

__all__ = ["browser"]  # fixture used here

HEADER = "Journal of Renal Reports, Vol. 3"
WIDTH = 212.0
ON_PAGE_1 = "Patients with lupus nephritis in the REGENCY trial received obinutuzumab and standard therapy."
RUN_ON = (
    "In the same issue, the editors noted that KYV-101 is a CD19 CAR T cell therapy developed by "
    "Kyverna Therapeutics for myasthenia gravis, and that its first results are expected next year "
    "from centres in Germany and the United States."
)
ON_PAGE_2 = "Obinutuzumab is a treatment option for lupus nephritis."
TXT = "KYV-101 is a CD19 CAR T cell therapy. Kyverna Therapeutics develops KYV-101 for myasthenia gravis."

RECORDS: dict[str, list[dict[str, Any]]] = {
    "therapies": [
        {"name": "KYV-101", "target": "CD19", "evidence": RUN_ON},  # pages 1 and 2
        {"name": "Obinutuzumab", "indications": ["lupus nephritis"], "evidence": ON_PAGE_2},  # page 2
        {"name": "KYV-101", "target": "CD19", "evidence": "KYV-101 is a CD19 CAR T cell therapy."},  # the .txt
    ],
    "conditions": [  # one thing, a mention on each page
        {"name": "lupus nephritis", "evidence": ON_PAGE_1},
        {"name": "lupus nephritis", "evidence": ON_PAGE_2},
    ],
}


class ByChunk(FakeProvider):
    """Answers each chunk with those of ``records`` whose evidence the chunk's prompt holds, as a
    model reading that chunk would."""

    def __init__(self, records: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__()
        self.records = records

    def create(self, **kwargs: Any) -> ChatCompletion:
        self.requests.append(kwargs)
        prompt = kwargs["messages"][-1]["content"]
        return completion(
            json.dumps({t: [r for r in rows if r["evidence"] in prompt] for t, rows in self.records.items()})
        )


def make_pdf(path: Path) -> Path:
    """Two pages; ``RUN_ON`` is the last paragraph of page 1, its last three wrapped lines drawn
    at the top of page 2 (the lines as the wrap made them, so the reader sees a paragraph that
    goes on over the page turn)."""
    lines = wrap(RUN_ON, WIDTH, "Helvetica", 11)
    assert len(lines) >= 4
    page1 = [
        "Background",
        ON_PAGE_1,
        "Methods",
        "Twelve patients were enrolled at three centres.",
        " ".join(lines[:-3]),
    ]
    page2 = [" ".join(lines[-3:]), "Results", ON_PAGE_2]
    return draw_lines(path, [page1, page2], header=HEADER, width=WIDTH)


def extract(docs: Path, db: Path) -> RunSummary:
    config = ExtractConfig(strategy="direct", reground=False)
    return run_extract([docs], db=db, config=config, provider=ByChunk(RECORDS), progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pages")
    docs = root / "docs"
    docs.mkdir()
    make_pdf(docs / "renal.pdf")
    (docs / "kyv.txt").write_text(TXT, encoding="utf-8")
    db = root / "pipeline.duckdb"
    summary = extract(docs, db)
    assert summary.status == "completed"
    return {"root": root, "docs": docs, "db": db, "summary": summary, "pdf": read_document(docs / "renal.pdf")}


def query(db: Path, sql: str) -> list[dict[str, Any]]:
    result = run_query(db, sql)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def test_the_pdf_puts_each_sentence_on_its_page(built: dict[str, Any]) -> None:
    doc = built["pdf"]
    assert len(doc.pages) == 2
    for sentence, pages in ((ON_PAGE_1, [1]), (RUN_ON, [1, 2]), (ON_PAGE_2, [2])):
        at = doc.text.index(sentence)
        assert pages_of(doc.pages, at, at + len(sentence)) == pages, sentence
    at = doc.text.index(RUN_ON)
    assert at < doc.pages[0].end < doc.pages[1].start < at + len(RUN_ON)  # the page turn inside the sentence


def test_documents_keep_their_page_spans(built: dict[str, Any]) -> None:
    rows = {r["doc_id"]: r["pages"] for r in query(built["db"], "SELECT doc_id, pages FROM documents")}
    assert json.loads(rows["renal"]) == [[p.start, p.end] for p in built["pdf"].pages]
    assert rows["kyv"] is None


def test_views_give_the_page_of_each_record(built: dict[str, Any]) -> None:
    db = built["db"]
    rows = query(db, "SELECT doc_id, name, evidence, page, pages FROM therapies ORDER BY doc_id, evidence_start")
    assert [(r["doc_id"], r["name"], r["page"], r["pages"]) for r in rows] == [
        ("kyv", "KYV-101", None, None),  # a .txt document has no pages
        ("renal", "KYV-101", 1, [1, 2]),  # the evidence starts on page 1 and ends on page 2
        ("renal", "Obinutuzumab", 2, [2]),
    ]
    conditions = query(db, "SELECT page, pages FROM conditions WHERE doc_id = 'renal' ORDER BY evidence_start")
    assert conditions == [{"page": 1, "pages": [1]}, {"page": 2, "pages": [2]}]
    # the SQL agrees with the Python page map on every record of every view
    doc = built["pdf"]
    for view in ("therapies", "conditions"):
        for r in query(db, f"SELECT evidence_start, evidence_end, pages FROM {view} WHERE doc_id = 'renal'"):
            assert r["pages"] == pages_of(doc.pages, r["evidence_start"], r["evidence_end"])
    # page sits right after the evidence offsets, the other columns as before
    cols = run_query(db, "SELECT * FROM therapies LIMIT 0").columns
    at = cols.index("evidence_end")
    assert cols[at - 2 : at + 5] == [
        "evidence",
        "evidence_start",
        "evidence_end",
        "page",
        "pages",
        "alignment",
        "grounded",
    ]
    tables = {r[0]: r[2] for r in list_tables(db).rows}
    assert "evidence_end BIGINT, page INTEGER, pages INTEGER[], alignment VARCHAR" in tables["therapies"]


def test_readme_page_query(built: dict[str, Any]) -> None:
    from tests.test_sql import readme_queries

    (sql,) = [q for q in readme_queries() if "WHERE page IS NOT NULL" in q]
    rows = run_query(built["db"], sql).rows
    assert [r[:4] for r in rows] == [("renal", "KYV-101", 1, [1, 2]), ("renal", "Obinutuzumab", 2, [2])]


def test_all_records_and_all_entities_carry_pages(built: dict[str, Any]) -> None:
    db = built["db"]
    rows = query(
        db,
        "SELECT record_type, label, page, pages FROM all_records WHERE doc_id = 'renal' ORDER BY evidence_start, record_type",
    )
    assert [(r["record_type"], r["label"], r["page"], r["pages"]) for r in rows] == [
        ("conditions", "lupus nephritis", 1, [1]),
        ("therapies", "KYV-101", 1, [1, 2]),
        ("conditions", "lupus nephritis", 2, [2]),
        ("therapies", "Obinutuzumab", 2, [2]),
    ]
    entities = query(
        db, "SELECT doc_id, label, n_mentions, pages FROM all_entities ORDER BY doc_id, record_type, label"
    )
    assert [tuple(e.values()) for e in entities] == [
        ("kyv", "KYV-101", 1, None),
        ("renal", "lupus nephritis", 2, [1, 2]),  # merged: the pages of both mentions
        ("renal", "KYV-101", 1, [1, 2]),
        ("renal", "Obinutuzumab", 1, [2]),
    ]


def test_sql_pages_equal_the_page_map_on_every_range() -> None:
    """The views' SQL and ``PageMap`` on the same spans (a separator, an empty page, a page turn
    with no separator) for every non-empty range in a small text, and for a document without pages."""
    spans = [Span(0, 10), Span(12, 20), Span(22, 22), Span(24, 30), Span(30, 35)]
    con = duckdb.connect()
    con.execute("CREATE TABLE documents (doc_id VARCHAR, doc_sha256 VARCHAR, pages JSON)")
    con.execute(
        "INSERT INTO documents VALUES ('d', 'h', ?), ('t', 'h', NULL)", [json.dumps([[s.start, s.end] for s in spans])]
    )
    ranges = [(a, b) for a in range(37) for b in range(a + 1, 38)]
    con.execute("CREATE TABLE r (doc_id VARCHAR, doc_sha256 VARCHAR, s BIGINT, e BIGINT)")
    con.executemany("INSERT INTO r VALUES (?, 'h', ?, ?)", [[d, a, b] for d in ("d", "t") for a, b in ranges])
    found = page_sql("r.doc_id", "r.doc_sha256", "r.s", "r.e")
    got = {
        (d, a, b): (page, pages)
        for d, a, b, page, pages in con.execute(
            f"SELECT r.doc_id, r.s, r.e, {found.page}, {found.pages} FROM r {found.joins}"
        ).fetchall()
    }
    page_map = PageMap(spans)
    assert len(got) == 2 * len(ranges)
    want = {("d", a, b): page_map(a, b) for a, b in ranges}
    assert {k: (v[1] or []) for k, v in got.items() if k[0] == "d"} == want
    assert all(page == (pages[0] if pages else None) for page, pages in got.values())
    assert {v for k, v in got.items() if k[0] == "t"} == {(None, None)}
    assert want["d", 5, 28] == [1, 2, 4]  # the checks cover an empty page inside a range


def test_export_carries_page_in_every_format(built: dict[str, Any]) -> None:
    db, out = built["db"], built["root"] / "export"
    for fmt in ("csv", "jsonl", "parquet"):
        run_export(db=db, out=out / fmt, fmt=fmt)
    with (out / "csv" / "therapies.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    assert header[header.index("evidence_end") + 1 : header.index("evidence_end") + 3] == ["page", "pages"]
    got = sorted((r["doc_id"], r["name"], r["page"], r["pages"]) for r in rows)
    assert got == [
        ("kyv", "KYV-101", "", ""),
        ("renal", "KYV-101", "1", "[1,2]"),
        ("renal", "Obinutuzumab", "2", "[2]"),
    ]
    lines = [json.loads(x) for x in (out / "jsonl" / "therapies.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted((r["doc_id"], r["name"], r["page"], r["pages"]) for r in lines) == [
        ("kyv", "KYV-101", None, None),
        ("renal", "KYV-101", 1, [1, 2]),
        ("renal", "Obinutuzumab", 2, [2]),
    ]
    con = duckdb.connect()
    parquet = con.execute(
        f"SELECT doc_id, name, page, pages FROM read_parquet('{out / 'parquet' / 'therapies.parquet'}') ORDER BY ALL"
    ).fetchall()
    assert parquet == [
        ("kyv", "KYV-101", None, None),
        ("renal", "KYV-101", 1, [1, 2]),
        ("renal", "Obinutuzumab", 2, [2]),
    ]
    (cond,) = [json.loads(x) for x in (out / "jsonl" / "conditions.jsonl").read_text(encoding="utf-8").splitlines()[1:]]
    assert (cond["evidence"], cond["page"]) == (ON_PAGE_2, 2)


def test_report_shows_the_pages(built: dict[str, Any]) -> None:
    summary = build_report(db=built["db"], out=built["root"] / "report.html")
    html = summary.path.read_text(encoding="utf-8")
    side = {
        (m.group(1), m.group(2) or "")
        for m in re.finditer(r'<span class="label">([^<]*)</span>\s*(?:<span class="page">([^<]*)</span>)?', html)
    }
    # side list: a merged record shows the pages of all its mentions; the .txt's record none
    assert {("lupus nephritis", "pp. 1\u20132"), ("KYV-101", "pp. 1\u20132"), ("Obinutuzumab", "p. 2")} <= side
    assert ("KYV-101", "") in side
    data = json.loads(
        re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    )
    assert sorted((r["label"], r["pages"]) for r in data.values()) == [
        ("KYV-101", ""),
        ("KYV-101", "pp. 1\u20132"),
        ("Obinutuzumab", "p. 2"),
        ("lupus nephritis", "pp. 1\u20132"),
    ]
    # the text marks where each page starts, inside the run-on sentence for page 2
    assert html.count('<span class="pg" data-page="1"') == 1 and html.count('<span class="pg" data-page="2"') == 1
    text = re.sub(r"</?mark[^>]*>", "", html)  # the highlights out: the text and the page marks
    assert (
        'Kyverna Therapeutics for <span class="pg" data-page="2" title="page 2 starts here"></span>myasthenia' in text
    )
    assert '<pre class="text"><span class="pg" data-page="1" title="page 1 starts here"></span>Journal' in text
    assert "renal.pdf · 2 pages ·" in html and "kyv.txt · " in html and "kyv.txt · 2 pages" not in html


def test_page_label() -> None:
    assert [page_label(p) for p in ([], [2], [1, 2], [3, 1, 2, 5], [1, 3])] == [
        "",
        "p. 2",
        "pp. 1\u20132",
        "pp. 1\u20133, 5",
        "pp. 1, 3",
    ]


def test_database_from_before_page_spans(tmp_path: Path) -> None:
    """A database without ``documents.pages`` (migration 007) still exports and reports, pages
    NULL; the next extract of the same PDF adds its page spans and the views have pages again."""
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "renal.pdf")
    db = tmp_path / "old.duckdb"
    extract(docs, db)
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE documents DROP COLUMN pages")
    con.execute("DELETE FROM _migrations WHERE name = '007_pages'")
    con.close()
    out = run_export(db=db, out=tmp_path / "x", fmt="jsonl")
    assert out.files["therapies"][1] == 2
    rows = [json.loads(x) for x in (tmp_path / "x" / "therapies.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["name"], r["page"], r["pages"]) for r in rows] == [("KYV-101", None, None), ("Obinutuzumab", None, None)]
    html = build_report(db=db, out=tmp_path / "r.html").path.read_text(encoding="utf-8")
    assert 'class="page"' not in html and 'class="pg"' not in html
    with Store(db) as store:  # opened for writing: migration 007 runs, the stored document has no pages yet
        assert store.con.execute("SELECT pages FROM documents").fetchall() == [(None,)]
    again = extract(docs, db)
    assert again.calls == 0  # every chunk reused
    assert query(db, "SELECT name, page FROM therapies ORDER BY evidence_start") == [
        {"name": "KYV-101", "page": 1},
        {"name": "Obinutuzumab", "page": 2},
    ]


@pytest.mark.browser
def test_pages_in_a_browser(built: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page = build_report(db=built["db"], out=tmp_path / "report.html").path
    browser.get(page.resolve().as_uri())
    section = browser.find_element(By.CSS_SELECTOR, 'section.doc[data-doc="renal"]')
    text = section.find_element(By.CSS_SELECTOR, "pre.text")
    assert text.get_attribute("textContent") == built["pdf"].text  # the page marks add no text
    marks = text.find_elements(By.CSS_SELECTOR, "span.pg")
    assert [m.get_attribute("data-page") for m in marks] == ["1", "2"]
    assert all(browser.execute_script("return arguments[0].getBoundingClientRect().width > 0", m) for m in marks)
    side = {
        li.find_element(By.CSS_SELECTOR, ".label").text: li.text
        for li in browser.find_elements(By.CSS_SELECTOR, '#side ul[data-doc="renal"] li[data-anchor]')
    }
    assert (
        "p. 2" in side["Obinutuzumab"]
        and "pp. 1\u20132" in side["KYV-101"]
        and "pp. 1\u20132" in side["lupus nephritis"]
    )
    kyv = next(
        li
        for li in browser.find_elements(By.CSS_SELECTOR, '#side ul[data-doc="renal"] li[data-anchor]')
        if "KYV-101" in li.text
    )
    spans = browser.execute_script(
        "return Array.from(document.querySelectorAll('mark.hl')).filter(m => m.dataset.recs.split(' ').includes(arguments[0])).map(m => m.textContent)",
        kyv.get_attribute("data-rec"),
    )
    assert len(spans) >= 2 and "".join(spans) == RUN_ON  # the highlight goes on over the page mark
    kyv.click()
    ActionChains(browser).move_to_element(browser.find_element(By.ID, kyv.get_attribute("data-anchor"))).perform()
    tip = browser.find_element(By.ID, "tip")
    assert tip.is_displayed() and "page" in tip.text and "pp. 1\u20132" in tip.text
    shot = tmp_path / "pages.png"
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
