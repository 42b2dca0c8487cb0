from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.errors import InputError
from pipeline.core.schema import load_schema
from pipeline.evaluate import GoldError
from pipeline.report import Segment, build_report, segment
from tests.conftest import FakeProvider
from tests.records_db import DES, KYV, build, extract, write_docs

SCHEMA = load_schema("biomedical")


def write_gold(folder: Path, doc_id: str, records: dict[str, list[dict[str, Any]]]) -> Path:
    folder.mkdir(exist_ok=True)
    full = {rt.name: records.get(rt.name, []) for rt in SCHEMA.record_types}
    (folder / f"{doc_id}.json").write_text(json.dumps({"doc_id": doc_id, "records": full}), encoding="utf-8")
    return folder


# -- pieces ------------------------------------------------------------------------


def test_segments_split_at_every_boundary_of_overlapping_spans() -> None:
    text = "abcdefghij"
    assert segment(text, [(2, 6, "a"), (4, 8, "b"), (4, 6, "c")]) == [
        Segment("ab", []),
        Segment("cd", ["a"]),
        Segment("ef", ["a", "b", "c"]),
        Segment("gh", ["b"]),
        Segment("ij", []),
    ]
    assert segment(text, []) == [Segment(text, [])]


def test_report_marks_records_as_eval_scores_them(tmp_path: Path, db: Path) -> None:
    """One matcher and one gold loader: the report's matched/spurious/missed are eval's tp/fp/fn."""
    from pipeline.evaluate import evaluate

    build(tmp_path, db)
    gold = write_gold(
        tmp_path / "gold",
        "des",
        {
            "article": [{"title": "Descartes-08 Receives Designation"}],
            "therapies": [{"name": ["Descartes-08", "Descartes 08"]}, {"name": "rapamycin"}],
            "regulatory_events": [{"agency": "FDA", "action": "approval", "therapy": "Descartes-08"}],
        },
    )
    report = build_report(db=db, out=tmp_path / "r.html", gold=gold)
    card = evaluate(db=db, gold_dir=gold, docs_dir=tmp_path / "docs", save=False)
    for name, s in card.per_type.items():
        c = report.counts[name]
        assert (c["matched"], c["spurious"], c["missed"]) == (s.tp, s.fp, s.fn), name


# -- the page ----------------------------------------------------------------------


def test_report_with_and_without_gold(tmp_path: Path, db: Path) -> None:
    summary = build(tmp_path, db)
    plain = build_report(db=db, out=tmp_path / "plain.html")
    assert (plain.run_id, plain.documents, plain.records, plain.grounded, plain.gold_documents) == (
        summary.run_id,
        2,
        6,
        5,
        0,
    )
    html = (tmp_path / "plain.html").read_text(encoding="utf-8")
    assert "no gold folder" in html and 'class="badge matched"' not in html

    gold = write_gold(
        tmp_path / "gold",
        "des",
        {
            "article": [{"title": "Descartes-08 Receives Designation"}],
            "therapies": [{"name": ["Descartes-08", "Descartes 08"]}, {"name": "rapamycin"}],
            "regulatory_events": [{"agency": "FDA", "action": "approval", "therapy": "Descartes-08"}],
        },
    )
    graded = build_report(db=db, out=tmp_path / "graded.html", gold=gold)
    assert graded.gold_documents == 1  # kyv has no gold file: nothing marked there
    counts = {t: c for t, c in graded.counts.items() if any(c.values())}
    assert counts == {
        "article": {"predicted": 1, "grounded": 1, "matched": 1, "spurious": 0, "missed": 0},
        "organizations": {"predicted": 1, "grounded": 0, "matched": 0, "spurious": 0, "missed": 0},
        "conditions": {"predicted": 1, "grounded": 1, "matched": 0, "spurious": 0, "missed": 0},
        "therapies": {"predicted": 2, "grounded": 2, "matched": 1, "spurious": 0, "missed": 1},
        "regulatory_events": {"predicted": 1, "grounded": 1, "matched": 0, "spurious": 1, "missed": 1},
    }
    html = (tmp_path / "graded.html").read_text(encoding="utf-8")
    assert re.search(r'<mark id="s0-\d+" class="hl t5 spurious" data-recs="r\d+">The FDA granted', html)
    assert '<span class="label">rapamycin</span><span class="badge missed">missed</span>' in html
    assert html.count('class="badge matched"') == 2


def test_gold_errors(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    with pytest.raises(InputError, match=r"gold folder .* does not exist"):
        build_report(db=db, out=tmp_path / "r.html", gold=tmp_path / "nope")
    (tmp_path / "gold").mkdir()
    (tmp_path / "gold" / "des.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(GoldError, match=r"gold file .*des.json is not valid JSON"):
        build_report(db=db, out=tmp_path / "r.html", gold=tmp_path / "gold")
    assert not (tmp_path / "r.html").exists()


def test_page_is_self_contained(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    html = build_report(db=db, out=tmp_path / "r.html").path.read_text(encoding="utf-8")
    assert not re.search(r"<(link|img|iframe|object|embed)\b", html)
    assert not re.search(r"""<script[^>]*\bsrc=|(src|href)=["']?(https?:)?//|url\(|@import""", html)
    assert "default-src 'none'" in html


# -- injection ---------------------------------------------------------------------

HOSTILE = (
    "Hostile page\n\n"
    "<script>window.__pwned = 1</script>\n"
    '<img src=x onerror="window.__pwned = 2"> & friends\n'
    "KYV-101 is a CD19 CAR T cell therapy.\n"
    "Also named: </script><script>window.__pwned = 3</script>.\n"  # a grounded hostile value
)
HOSTILE_OUT = {
    "therapies": [
        {
            "name": "</script><script>window.__pwned = 3</script>",
            "modality": '"><img src=x onerror="window.__pwned = 4">',
            "evidence": "<script>window.__pwned = 1</script>",
        }
    ]
}


def hostile_report(tmp_path: Path, db: Path) -> Path:
    docs = write_docs(tmp_path, {"<b>evil<b>.txt": HOSTILE})
    summary = extract([docs], db, FakeProvider([HOSTILE_OUT]))
    assert summary.records["therapies"] == 1
    return build_report(db=db, out=tmp_path / "hostile.html").path


def test_document_text_and_values_are_escaped(tmp_path: Path, db: Path) -> None:
    html = hostile_report(tmp_path, db).read_text(encoding="utf-8")
    for raw in ["<script>window", "<img src=x", "</script><script>", "<b>evil"]:
        assert raw not in html, raw
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;window.__pwned = 2&#34;&gt; &amp; friends" in html
    assert html.count("<script") == 2  # the page's data block and its own code, nothing else


# -- in a real browser -------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        message = "chromium and chromium-driver are not installed (`make browser` installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,800",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def in_viewport(driver: Any, element: Any) -> bool:
    return bool(
        driver.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth;",
            element,
        )
    )


LONG = (
    "Long report\n\n" + "".join(f"Paragraph {i} says nothing in particular about anything.\n" for i in range(120)) + KYV
)


@pytest.mark.browser
def test_report_in_a_browser(tmp_path: Path, db: Path, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    docs = write_docs(tmp_path, {"des.txt": DES, "long.txt": LONG})
    fake = FakeProvider(
        default={
            "therapies": [{"name": "KYV-101", "target": "CD19", "evidence": "KYV-101 is a CD19 CAR T cell therapy."}],
            "conditions": [{"name": "myasthenia gravis", "evidence": "develops KYV-101 for myasthenia gravis"}],
        }
    )
    extract([docs], db, fake)
    gold = write_gold(tmp_path / "gold", "long", {"therapies": [{"name": "KYV-101"}], "people": [{"name": "Jane Doe"}]})
    page = build_report(db=db, out=tmp_path / "report.html", gold=gold).path
    texts = {"des": DES, "long": LONG}
    browser.get(page.resolve().as_uri())

    # the text is whole, and each record's highlight covers exactly its evidence span
    for section in browser.find_elements(By.CSS_SELECTOR, "section.doc"):
        doc = section.get_attribute("data-doc")
        assert section.find_element(By.CSS_SELECTOR, "pre.text").get_attribute("textContent") == texts[doc]
    items = browser.find_elements(By.CSS_SELECTOR, "#side li[data-anchor]")
    assert items
    for li in items:
        uid = li.get_attribute("data-rec")
        marks = browser.execute_script(
            "return Array.from(document.querySelectorAll('mark.hl')).filter(m => m.dataset.recs.split(' ').includes(arguments[0])).map(m => m.textContent).join('')",
            uid,
        )
        data = browser.execute_script(
            "return JSON.parse(document.getElementById('report-data').textContent)[arguments[0]]", uid
        )
        assert marks == data["evidence"], uid

    # click the last KYV-101 in the side list: its span is far down the long document
    target = [li for li in items if "KYV-101" in li.text][-1]
    anchor = browser.find_element(By.ID, target.get_attribute("data-anchor"))
    assert not in_viewport(browser, anchor)
    target.click()
    assert in_viewport(browser, anchor)
    assert anchor.text == "KYV-101 is a CD19 CAR T cell therapy."
    assert "focus" in anchor.get_attribute("class")

    # hovering shows the record's fields
    ActionChains(browser).move_to_element(anchor).perform()
    tip = browser.find_element(By.ID, "tip")
    assert tip.is_displayed() and "target" in tip.text and "CD19" in tip.text

    # gold: the matched therapy, the missed person
    assert "matched" in target.text
    missed = browser.find_elements(By.CSS_SELECTOR, "#side li.missed")
    assert [m.find_element(By.CSS_SELECTOR, ".type").text for m in missed] == ["people"]
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")


@pytest.mark.browser
def test_hostile_document_runs_no_script_in_a_browser(tmp_path: Path, db: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    page = hostile_report(tmp_path, db)
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_element(By.CSS_SELECTOR, "pre.text").get_attribute("textContent") == HOSTILE
    assert browser.find_elements(By.CSS_SELECTOR, "pre.text img, pre.text script") == []
    label = browser.find_element(By.CSS_SELECTOR, "#side li[data-anchor] .label")
    assert label.text == HOSTILE_OUT["therapies"][0]["name"]
    label.click()
    browser.find_element(By.CSS_SELECTOR, "mark.hl")  # the span is there, as text
    assert browser.execute_script("return window.__pwned === undefined")


def test_cli_uses_evals_gold_when_present(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_sql import cli

    summary = build(tmp_path, db)  # the working directory is tmp_path
    code, out, _ = cli(capsys, monkeypatch, "report", "--db", str(db))
    assert (code, out) == (0, f"report.html: run {summary.run_id}, 2 documents, 6 records (5 grounded), no gold\n")
    (tmp_path / "evals" / "gold").mkdir(parents=True)
    write_gold(tmp_path / "evals" / "gold", "des", {"therapies": [{"name": "Descartes-08"}]})
    code, out, _ = cli(capsys, monkeypatch, "report", "--db", str(db), "--out", "out/r.html")
    assert code == 0 and out.endswith("gold for 1\n") and Path("out/r.html").is_file()
    code, _, err = cli(capsys, monkeypatch, "report", "--db", str(db), "--run", "nope")
    assert code == 1 and err.startswith("error: no run 'nope'")
