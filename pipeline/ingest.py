"""Read documents and select their main content.

Cleaning never rewrites text: it selects the spans of ``Document.text`` that are main
content, so every later offset still points into the text the user gave us.

- ``.html``/``.htm``: trafilatura extracts the main content (menus, ads, footers dropped
  by its boilerplate classifier); its output is the document text, kept whole.
- ``.pdf``: ``pipeline.pdf`` builds the text from the pages (paragraphs rejoined, line-end
  hyphens resolved) and selects spans with the ``.txt`` rules below, minus running headers,
  footers and page numbers.
- ``.txt``/``.md`` (raw web-page text dumps): a line classifier, documented in the README
  ("Cleaning"), drops
  1. lines matching common boilerplate phrases (ads, consent, share bars, gov banners, copyright);
  2. navigation: runs of short bullet items without sentence punctuation;
  3. whole sections that start at a boilerplate heading ("Related Articles", "Learn More",
     "MeSH terms", ...) and run until the next content heading ("References", "Abstract", ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.core.errors import InputError
from pipeline.core.types import Document, Span

SUFFIXES = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".pdf": "pdf"}
MAX_BYTES = 50 * 1024 * 1024

BOILERPLATE_LINE = re.compile(
    r"""^(
        advertisement | scroll\ to\ continue | ad\ goes\ here\b.* | sponsored(\ content)?
      | skip\ to\ (main\ )?(page\ )?content | u\.s\.\ flag | dot\ gov | https
      | an\ official\ (website|publication)\ of\b.*
      | the\ \.gov\ means\ it.s\ official\.? | the\ site\ is\ secure\.?
      | federal\ government\ websites\ often\ end\ in\b.*
      | the\ https://\ ensures\b.*
      | access\ keys\b.* | share:? | share\ this(\ article)?:? | print | email | tweet
      | page:\ [\d\s|]+.* | filed\ under:.* | tagged\ with:.*
      | (video|webinar|podcast):\ .* | subscribe\b.* | sign\ (in|up)\b.* | log\ ?in
      | (cookie|privacy)\ (preferences|policy|settings) | terms\ of\ (use|service) | dei\ statement
      | copyright\ ©.* | ©\ ?\d{4}.* | all\ rights\ reserved\.?
      | click\ to\ (email|share|print)\b.* | pubmed\ disclaimer | search
    )$""",
    re.IGNORECASE | re.VERBOSE,
)

SECTION_STOP = re.compile(
    r"""^(
        related\ (articles|content|stories|posts|reading) | learn\ more | read\ more | more\ to\ explore
      | recommended(\ for\ you)? | you\ may\ also\ like | most\ (read|popular) | trending
      | similar\ articles | cited\ by | publication\ types | mesh\ terms | substances
      | linkout\ -\ more\ resources | related\ information | grants\ and\ funding
      | full\ text\ sources | supplementary\ concepts | comment\ in | erratum\ in
      | about\ us | contact\ us | footer | site\ map | follow\ us
    ):?$""",
    re.IGNORECASE | re.VERBOSE,
)

CONTENT_HEADING = re.compile(
    r"^(abstract|background|introduction|methods?|results|findings|conclusions?|discussion|"
    r"references|funding|keywords|acknowledg(e)?ments)\b",
    re.IGNORECASE,
)

BULLET = re.compile(r"^\s*([•·▪◦*+-]|\d+\.)\s+")


def _is_nav_item(line: str) -> bool:
    """A short bullet item with no sentence punctuation: a menu or link-list entry."""
    m = BULLET.match(line)
    if not m or m.group(1).endswith("."):  # numbered items are reference lists, kept
        return False
    body = line[m.end() :].strip()
    return len(body.split()) <= 8 and not re.search(r"[.!?;:]\s*$|[.!?]\s", body)


def clean_text_spans(text: str) -> list[Span]:
    """Spans of ``text`` that are main content, by the line rules in the module docstring."""
    keep: list[bool] = []
    lines: list[tuple[int, int]] = []
    in_stop_section = False
    pos = 0
    for raw in text.splitlines(keepends=True):
        start, end = pos, pos + len(raw.rstrip("\r\n"))
        pos += len(raw)
        line = text[start:end].strip()
        lines.append((start, end))
        if not line:
            keep.append(False)
            continue
        if SECTION_STOP.match(line):
            in_stop_section = True
        elif in_stop_section and CONTENT_HEADING.match(line) and len(line.split()) <= 3:
            in_stop_section = False
        keep.append(not (in_stop_section or BOILERPLATE_LINE.match(line) or _is_nav_item(text[start:end])))
    return _merge(lines, keep, text)


def _merge(lines: list[tuple[int, int]], keep: list[bool], text: str) -> list[Span]:
    """Join consecutive kept lines (blank lines between them included) into spans."""
    spans: list[Span] = []
    cur: Span | None = None
    for (start, end), k in zip(lines, keep, strict=True):
        if k:
            cur = Span(cur.start, end) if cur else Span(start, end)
        elif text[start:end].strip() and cur is not None:  # a dropped non-blank line ends the span
            spans.append(cur)
            cur = None
    if cur is not None:
        spans.append(cur)
    return [_strip_span(text, s) for s in spans if text[s.start : s.end].strip()]


def _strip_span(text: str, span: Span) -> Span:
    seg = text[span.start : span.end]
    lead = len(seg) - len(seg.lstrip())
    trail = len(seg) - len(seg.rstrip())
    return Span(span.start + lead, span.end - trail)


def html_main_text(html: str, source: str) -> str:
    import trafilatura  # heavy import, only when HTML is read

    text = trafilatura.extract(
        html, include_comments=False, include_tables=True, favor_recall=True, output_format="txt"
    )
    if not text or not text.strip():
        raise InputError(
            f"{source}: no main content found in the HTML",
            "check that the file is an article page, or save its text as .txt",
        )
    return text


def decode(data: bytes, source: str) -> tuple[str, list[str]]:
    """UTF-8 text; invalid bytes are replaced with U+FFFD and reported as a warning."""
    if b"\x00" in data[:8192]:
        raise InputError(f"{source}: looks like a binary file (NUL bytes)", "pass .txt, .md or .html text files")
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        return text, [f"{source}: {bad} invalid UTF-8 byte(s) at offset {exc.start}+ replaced with U+FFFD"]


def read_document(path: Path) -> Document:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: unsupported file type {path.suffix or '(none)'}", "pass .txt, .md, .html or .pdf files"
        )
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: file is empty", "remove it from the inputs or add its text")
    if size > MAX_BYTES:
        raise InputError(f"{path}: {size} bytes is over the {MAX_BYTES} byte limit", "split the document")
    if fmt == "pdf":
        from pipeline.pdf import read_pdf  # PDFium loads only when a PDF is read

        return read_pdf(path)
    text, warnings = decode(path.read_bytes(), str(path))
    if fmt == "html":
        text = html_main_text(text, str(path))
        kept = [Span(0, len(text))]
    else:
        kept = clean_text_spans(text)
    if not text.strip() or not kept:
        raise InputError(f"{path}: no text left after cleaning", "check that the file holds an article's text")
    return Document(doc_id=path.stem, path=str(path), format=fmt, text=text, kept=kept, warnings=warnings)


def iter_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders into document paths, sorted, failing on a missing path."""
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder", "check the path")
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
            if not found:
                raise InputError(f"{path}: folder has no .txt, .md or .html files", "point at a folder of documents")
            yield from found
        else:
            yield path


def read_documents(paths: Iterable[str | Path]) -> list[Document]:
    """Read every document up front so bad input fails before anything is stored."""
    docs = [read_document(p) for p in iter_paths(paths)]
    seen: dict[str, str] = {}
    for d in docs:
        if d.doc_id in seen and seen[d.doc_id] != d.path:
            raise InputError(
                f"two documents share the id {d.doc_id!r}: {seen[d.doc_id]} and {d.path}",
                "document ids are file stems; rename one of the files",
            )
        seen[d.doc_id] = d.path
    return docs
