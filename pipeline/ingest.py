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
  1. lines matching common web boilerplate phrases (ads, consent, share bars, gov banners, copyright);
  2. navigation: runs of three or more short bullet items without sentence punctuation or
     numbers, unless a line ending in ":" introduces them (a list of adverse events or of
     invoice lines is content);
  3. whole sections that start at a boilerplate heading ("Related Articles", "Learn More",
     ...) and run until the next content heading ("References", "Abstract", ...); such a
     heading directly followed by a paragraph of running prose is a widget label in the
     middle of the article, and only the label is dropped.
  A schema package adds its own lines and headings (``Domain.cleaning``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.core.domain import Cleaning
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
      | click\ to\ (email|share|print)\b.* | search
    )$""",
    re.IGNORECASE | re.VERBOSE,
)

SECTION_STOP = re.compile(
    r"""^(
        related\ (articles|content|stories|posts|reading) | learn\ more | read\ more | more\ to\ explore
      | recommended(\ for\ you)? | you\ may\ also\ like | most\ (read|popular) | trending
      | similar\ articles | cited\ by | about\ us | contact\ us | footer | site\ map | follow\ us
    ):?$""",
    re.IGNORECASE | re.VERBOSE,
)

CONTENT_HEADING = re.compile(
    r"^(abstract|background|introduction|methods?|results|findings|conclusions?|discussion|"
    r"references|funding|keywords|acknowledg(e)?ments)\b",
    re.IGNORECASE,
)

BULLET = re.compile(r"^\s*([•·▪◦*+-]|\d+\.)\s+")


def _is_short_item(line: str) -> bool:
    """A bullet item of a few words with no sentence punctuation and no number: a link."""
    m = BULLET.match(line)
    if not m or m.group(1).endswith("."):  # numbered items are reference lists, kept
        return False
    body = line[m.end() :].strip()
    return len(body.split()) <= 8 and not re.search(r"[.!?;:]\s*$|[.!?]\s|\d", body)


#: a run of this many short items in a row is a menu or a link list
NAV_RUN = 3


def _navigation(lines: list[str]) -> set[int]:
    """Indices of lines in runs of ``NAV_RUN``+ short bullet items (blank lines inside a run
    allowed) that no line ending in ":" introduces."""
    out: set[int] = set()
    i = 0
    while i < len(lines):
        if not _is_short_item(lines[i]):
            i += 1
            continue
        run = [i]
        j = i + 1
        while j < len(lines) and (_is_short_item(lines[j]) or not lines[j].strip()):
            if lines[j].strip():
                run.append(j)
            j += 1
        before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        if len(run) >= NAV_RUN and not before.endswith(":"):
            out.update(run)
        i = j
    return out


#: a paragraph of this many words, in two or more sentences, is running prose
PROSE_WORDS = 25


def _is_prose(line: str) -> bool:
    """A paragraph of running prose (not a teaser excerpt cut off with an ellipsis)."""
    return (
        len(line.split()) >= PROSE_WORDS
        and bool(re.search(r"[a-z0-9)][.!?][\"”’)]?\s+[A-Z“\"]", line))
        and not line.rstrip().endswith(("…", "..."))
    )


def clean_text_spans(text: str, cleaning: Cleaning | None = None) -> list[Span]:
    """Spans of ``text`` that are main content, by the line rules in the module docstring
    and the schema package's own (``cleaning``)."""
    extra = cleaning or Cleaning()
    lines: list[tuple[int, int]] = []
    pos = 0
    for raw in text.splitlines(keepends=True):
        lines.append((pos, pos + len(raw.rstrip("\r\n"))))
        pos += len(raw)
    raw_lines = [text[start:end] for start, end in lines]
    nav = _navigation(raw_lines)
    keep: list[bool] = []
    in_stop_section = False
    for i, raw_line in enumerate(raw_lines):
        line = raw_line.strip()
        if not line:
            keep.append(False)
            continue
        if SECTION_STOP.match(line) or (extra.section_stops and extra.section_stops.match(line)):
            following = next((x.strip() for x in raw_lines[i + 1 :] if x.strip()), "")
            in_stop_section = not _is_prose(following)  # else a widget label: the article goes on
            keep.append(False)
            continue
        elif (
            in_stop_section
            and len(line.split()) <= 3
            and (CONTENT_HEADING.match(line) or (extra.content_headings and extra.content_headings.match(line)))
        ):
            in_stop_section = False
        boilerplate = BOILERPLATE_LINE.match(line) or (extra.boilerplate and extra.boilerplate.match(line))
        keep.append(not (in_stop_section or boilerplate or i in nav))
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


def read_document(path: Path, cleaning: Cleaning | None = None) -> Document:
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

        return read_pdf(path, cleaning=cleaning)
    text, warnings = decode(path.read_bytes(), str(path))
    if fmt == "html":
        text = html_main_text(text, str(path))
        kept = [Span(0, len(text))]
    else:
        kept = clean_text_spans(text, cleaning)
    if not text.strip() or not kept:
        raise InputError(f"{path}: no text left after cleaning", "check that the file holds an article's text")
    return Document(doc_id=path.stem, path=str(path), format=fmt, text=text, kept=kept, warnings=warnings)


def supported_types() -> str:
    """The suffixes the pipeline reads, from ``SUFFIXES``: ``.htm, .html, .md, ...``."""
    return ", ".join(sorted(SUFFIXES))


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def iter_paths(paths: Iterable[str | Path], skipped: list[str] | None = None) -> Iterator[Path]:
    """Expand files and folders into document paths, sorted, failing on a missing path.

    A folder's files of a type the pipeline does not read are left out; ``skipped`` gets one
    line per such folder naming how many of each suffix (hidden files are not counted)."""
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder", "check the path")
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file())
            found = [f for f in files if f.suffix.lower() in SUFFIXES]
            if not found:
                raise InputError(
                    f"{path}: folder has no documents of a supported type ({supported_types()})",
                    "point at a folder of documents",
                )
            other = Counter(
                f.suffix.lower() or "(none)" for f in files if f.suffix.lower() not in SUFFIXES and not _hidden(f, path)
            )
            if other and skipped is not None:
                n = sum(other.values())
                kinds = ", ".join(f"{suffix} {k}" for suffix, k in sorted(other.items()))
                skipped.append(
                    f"{path}: {n} file{'s' if n != 1 else ''} skipped ({kinds}): "
                    f"the supported types are {supported_types()}"
                )
            yield from found
        else:
            yield path


def read_documents(paths: Iterable[str | Path], cleaning: Cleaning | None = None) -> list[Document]:
    """Read every document up front so bad input fails before anything is stored.

    A file named twice (the same file, however spelled, or a file and its folder) is read
    once, with a warning; two files with one stem are an error (the stem is the document id).
    Warnings about the inputs as a whole ride on the first document, so they reach the run's
    summary with the documents' own."""
    notes: list[str] = []
    unique: dict[Path, Path] = {}
    for path in iter_paths(paths, skipped=notes):
        key = path.resolve()
        if key in unique:
            notes.append(f"{path} given twice: read once")
        else:
            unique[key] = path
    docs = [read_document(p, cleaning) for p in unique.values()]
    seen: dict[str, str] = {}
    for d in docs:
        if d.doc_id in seen:
            raise InputError(
                f"two documents share the id {d.doc_id!r}: {seen[d.doc_id]} and {d.path}",
                "document ids are file stems; rename one of the files",
            )
        seen[d.doc_id] = d.path
    if docs and notes:
        docs[0].warnings[:0] = notes
    return docs
