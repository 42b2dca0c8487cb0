"""Read PDF files into a ``Document`` whose offsets and page numbers stay true.

How a PDF becomes ``Document.text`` (the text every offset points into):

1. PDFium (``pypdfium2``) gives each page's text lines in the page's content order, and a box
   for their characters. It runs in a child process under a time limit (``TIMEOUT_S``), a memory
   limit (``MAX_MEMORY``) and a page limit (``MAX_PAGES``), so a hostile file can neither hang
   nor exhaust the job.
2. Lines are joined into paragraphs, one paragraph per line of the document text, as in the
   text files the rest of the pipeline reads. A line ends its paragraph when the next line
   starts a list item, changes font size, follows extra vertical space, or when the next line's
   first word would have fitted at its end (so the break was not a wrap).
3. A word broken at a line-end hyphen is rejoined ("treat-" + "ment" -> "treatment") when the
   next part starts in lower case; a soft hyphen (U+00AD) always goes. Whether a plain hyphen was
   a typesetter's or part of the word ("long-term") is decided by the document's own words: the
   joined or the hyphenated form seen elsewhere in it wins; with neither seen, the hyphen goes.
   Latin ligature characters (U+FB00-FB06) are spelled out.
4. Pages are joined with a blank line; ``Document.pages[i]`` is the span of page ``i + 1``. A
   paragraph that runs on over a page turn stays one line: the page boundary falls inside it.

This is the only rewriting, and it happens before any offset exists. Cleaning then only
selects spans: the line rules of ``clean_text_spans`` (the same as for ``.txt``), minus running
headers and footers: a paragraph among the two top or two bottom ones of a page whose text
(digits ignored) comes back there on at least half the pages (and on two or more), and lone page
numbers ("3", "- 3 -", "Page 3 of 10") at the top or bottom of a page.
"""

from __future__ import annotations

import atexit
import bisect
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.domain import Cleaning
from pipeline.core.errors import InputError
from pipeline.core.types import Document, Span

#: wall-clock limit for reading one PDF (the child process is killed after it)
TIMEOUT_S = 120.0
MAX_PAGES = 5000
#: address-space limit of the reader process (a decompression bomb fails there, not in the job)
MAX_MEMORY = 2 << 30
PAGE_SEP = "\n\n"

#: one text line of a page: text, left x, right x, baseline y of its first and of its last
#: character, font size, right x of its first word
Line = tuple[str, float, float, float, float, float, float]


@dataclass(frozen=True)
class PageLines:
    """What PDFium gives for one page (PDF units, y grows upwards)."""

    width: float
    height: float
    n_chars: int
    lines: list[Line]


class PdfProblem(Exception):
    """Raised in the child process: ``kind`` is one of the keys of ``_PROBLEMS``."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


_PROBLEMS = {
    "encrypted": (
        "is encrypted (password-protected)",
        "decrypt it first (qpdf --password=... --decrypt in.pdf out.pdf) or pass its text as .txt",
    ),
    "security": (
        "uses an unsupported encryption scheme",
        "decrypt it first (qpdf --password=... --decrypt in.pdf out.pdf) or pass its text as .txt",
    ),
    "damaged": ("is damaged or not a PDF", "re-export it, repair it (qpdf in.pdf out.pdf), or pass its text as .txt"),
    "pages": ("has too many pages", f"split it into parts of at most {MAX_PAGES} pages"),
    "no_text": (
        "has no text layer (scanned or image-only pages)",
        "OCR needed: run OCR first (ocrmypdf in.pdf out.pdf) and pass the result, or pass its text as .txt",
    ),
}


# -- PDFium, in a child process ------------------------------------------------------------


def extract_lines(data: bytes, max_pages: int = MAX_PAGES) -> list[PageLines]:
    """Every page's text lines with their geometry. Raises ``PdfProblem``."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        kind = {pdfium_c.FPDF_ERR_PASSWORD: "encrypted", pdfium_c.FPDF_ERR_SECURITY: "security"}
        raise PdfProblem(kind.get(exc.err_code or -1, "damaged"), str(exc)) from None
    try:
        if len(pdf) > max_pages:
            raise PdfProblem("pages", f"{len(pdf)} pages")
        pages = []
        for i in range(len(pdf)):
            try:
                page = pdf[i]
            except pdfium.PdfiumError as exc:
                raise PdfProblem("damaged", f"page {i + 1}: {exc}") from None
            try:
                pages.append(_page_lines(page, pdfium_c))
            finally:
                page.close()
        return pages
    finally:
        pdf.close()


def _page_lines(page: Any, pdfium_c: Any) -> PageLines:
    import ctypes

    textpage = page.get_textpage()
    try:
        text: str = textpage.get_text_range()
        left, right, bottom, top = (ctypes.c_double() for _ in range(4))
        ox, oy = ctypes.c_double(), ctypes.c_double()

        def char(text_index: int) -> tuple[float, float, float, float]:
            """left x, right x, baseline y, font size of the character at a text index"""
            i = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, text_index)
            if i < 0 or not pdfium_c.FPDFText_GetCharBox(textpage, i, left, right, bottom, top):
                return (0.0, 0.0, 0.0, 0.0)
            pdfium_c.FPDFText_GetCharOrigin(textpage, i, ox, oy)
            return (left.value, right.value, oy.value, pdfium_c.FPDFText_GetFontSize(textpage, i))

        lines: list[Line] = []
        for m in re.finditer(r"[^\r\n]+", text):
            seg = m.group(0)
            start = m.start() + len(seg) - len(seg.lstrip())
            end = m.end() - (len(seg) - len(seg.rstrip()))
            if start >= end:
                continue
            space = text.find(" ", start, end)
            x0, _, y0, size0 = char(start)
            _, x1, y1, size1 = char(end - 1)
            word_right = char((space if space > 0 else end) - 1)[1]
            lines.append((text[start:end], x0, x1, y0, y1, max(size0, size1), word_right))
        n_chars = len("".join(text.split()))
        width, height = page.get_size()
        return PageLines(float(width), float(height), n_chars, lines)
    finally:
        textpage.close()


def extract_file(path: str, max_pages: int = MAX_PAGES) -> list[PageLines]:
    return extract_lines(Path(path).read_bytes(), max_pages)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">Q", len(payload)) + payload


def serve() -> None:
    """The reader process: answers pickled ``(fn, args)`` frames on stdin, one at a time, until EOF."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MAX_MEMORY, MAX_MEMORY))
    except (ImportError, ValueError, OSError):  # not on this platform: the time limit still holds
        pass
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library that prints must not corrupt the answer stream
    inp = sys.stdin.buffer
    while header := inp.read(8):
        fn, args = pickle.loads(inp.read(struct.unpack(">Q", header)[0]))
        try:
            answer: tuple[str, Any] = ("ok", fn(*args))
        except PdfProblem as exc:
            answer = ("problem", (exc.kind, exc.detail))
        except Exception as exc:
            answer = ("problem", ("damaged", f"{type(exc).__name__}: {exc}"))
        out.write(_frame(pickle.dumps(answer)))
        out.flush()


class _Reader:
    """A long-lived child process (``serve``) that runs calls one at a time under a time limit.

    A child that overruns is killed and the next call starts a fresh one. Not ``multiprocessing``:
    its spawn and forkserver re-import the caller's main script, and fork is unsafe with threads.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        atexit.register(self.stop)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            env = dict(os.environ)
            root = str(Path(__file__).resolve().parent.parent)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from pipeline.pdf import serve; serve()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        return self.proc

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> Any:
        """``fn(*args)`` in the child. Raises ``TimeoutError``, the child's ``PdfProblem``, or
        ``ChildProcessError`` when the child died without answering (a crash, killed for memory)."""
        with self.lock:
            deadline = time.monotonic() + timeout
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(_frame(pickle.dumps((fn, args))))
                proc.stdin.flush()
                size = struct.unpack(">Q", self._read(proc, 8, deadline))[0]
                status, payload = pickle.loads(self._read(proc, size, deadline))
            except TimeoutError:
                self.stop()
                raise
            except (BrokenPipeError, EOFError):
                code = proc.poll()
                self.stop()
                raise ChildProcessError(f"the reader process died (exit code {code})") from None
        if status == "problem":
            raise PdfProblem(*payload)
        return payload

    @staticmethod
    def _read(proc: subprocess.Popen[bytes], n: int, deadline: float) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        chunks: list[bytes] = []
        while n > 0:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


_READER = _Reader()


def run_limited(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> Any:
    """``fn(*args)`` (picklable by reference) in the reader process, killed after ``timeout`` s."""
    return _READER.call(fn, args, timeout)


# -- lines -> paragraphs -> text --------------------------------------------------------------

_BULLET = re.compile(r"^([•·▪◦*+‣–-]|\d{1,3}[.)]|\(?[a-z]\))\s")
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"})  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u00ad]")
#: PDFium marks a hyphen it found at a line end (and drops the break after it) with U+FFFE or U+0002
_PDFIUM_HYPHEN = re.compile("[\ufffe\x02]")
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_TAIL = re.compile(r"([^\W\d_]+)-$")
_HEAD = re.compile(r"^[^\W\d_]+")
_PAGE_NO = re.compile(r"^(page\s*)?[-–—]?\s*#\s*[-–—]?(\s*(of|/)\s*#)?$")


@dataclass
class _Para:
    lines: list[Line]
    edge: float  # the right edge of its last line's column

    @property
    def top(self) -> float:
        return self.lines[0][3]


def _paragraphs(page: PageLines, pitch_limit: float) -> list[_Para]:
    lines = page.lines
    edges = [_right_edge(a, lines) for a in lines]
    paras: list[_Para] = []
    for i, line in enumerate(lines):
        if paras and not _breaks(lines[i - 1], line, edges[i - 1], pitch_limit):
            paras[-1].lines.append(line)
            paras[-1].edge = edges[i]
        else:
            paras.append(_Para([line], edges[i]))
    return paras


def _right_edge(a: Line, lines: Sequence[Line]) -> float:
    """Where the lines of ``a``'s column end: the right ends of the lines that start within 3 font
    sizes of ``a`` and overlap it (a centred header and the other column do not count), less the
    furthest tenth of them (a rare full-width line) when there are ten or more."""
    ends = sorted(b[2] for b in lines if abs(b[1] - a[1]) <= 3 * a[5] and b[1] < a[2] and a[1] < b[2])
    return ends[len(ends) - 1 - len(ends) // 10] if ends else a[2]


def _breaks(a: Line, b: Line, edge: float, pitch_limit: float) -> bool:
    """Does line ``a`` end its paragraph, given the next line ``b``?"""
    size_a, size_b = a[5], b[5]
    if not size_a or not size_b or abs(size_a - size_b) > 0.05 * max(size_a, size_b):
        return True  # no geometry, or the font size changes
    if _BULLET.match(b[0]):
        return True
    drop = a[4] - b[3]  # baseline to baseline, > 0 when b is below a
    if abs(drop) < 0.3 * size_a:
        return True  # the same baseline: another block on the same line
    if drop > 0 and drop / size_a > pitch_limit:
        return True  # extra vertical space
    if drop < 0 and b[1] < a[2] - size_a:
        return True  # b is higher up but not in a column to the right: a new block
    first_word = b[6] - b[1]
    return a[2] + 0.6 * size_a + first_word < edge  # b's first word (and a space) would have fitted on a


def _pitch_limit(pages: Sequence[PageLines]) -> float:
    """Baseline distance (in font sizes) above which a paragraph ends: the usual distance between
    wrapped lines (the lower quartile: blank lines and paragraph spacing only add) plus 0.35."""
    pitches = sorted(
        (a[4] - b[3]) / a[5]
        for p in pages
        for a, b in zip(p.lines, p.lines[1:], strict=False)
        if a[5] and a[4] - b[3] > 0.6 * a[5] and abs(a[5] - b[5]) <= 0.05 * a[5]
    )
    return (pitches[len(pitches) // 4] if len(pitches) >= 3 else 1.2) + 0.35


class _Words:
    """The document's own words, to tell a typesetter's hyphen from a word's."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.counts: Counter[str] = Counter()
        for t in texts:
            self.counts.update(w.lower() for w in _WORD.findall(t))

    def keeps_hyphen(self, left: str, right: str) -> bool:
        if not right[:1].islower():
            return True  # a capital or digit goes on: "non-" + "English", "mid-" + "2020"
        joined = self.counts[(left + right).lower()]
        hyphenated = self.counts[f"{left}-{right}".lower()]
        return hyphenated > joined


def _join(prev: str, nxt: str, words: _Words) -> str:
    """Join two wrapped lines of one paragraph."""
    if prev.endswith("\u00ad"):
        return prev[:-1] + nxt
    if prev.endswith("-") and len(prev) > 1 and not prev[-2].isspace():
        tail, head = _TAIL.search(prev), _HEAD.match(nxt)
        if tail and head and not words.keeps_hyphen(tail.group(1), head.group(0)):
            return prev[:-1] + nxt
        return prev + nxt
    if prev.endswith(("–", "—", "/")) and len(prev) > 1 and not prev[-2].isspace():
        return prev + nxt  # a line may break after a dash or slash inside a word ("B Cell–targeted")
    return f"{prev} {nxt}"


def _para_text(parts: Sequence[str], words: _Words) -> str:
    pieces = [p for part in parts for p in _split_pdfium_hyphens(part)]
    out = pieces[0]
    for nxt in pieces[1:]:
        out = _join(out, nxt, words)
    return _CONTROL.sub("", out.translate(_LIGATURES))


def _split_pdfium_hyphens(line: str) -> list[str]:
    pieces = _PDFIUM_HYPHEN.split(line)
    return [p + "-" for p in pieces[:-1]] + [pieces[-1]]


def _running(paras_by_page: Sequence[Sequence[_Para]], texts: Sequence[Sequence[str]]) -> set[tuple[int, int]]:
    """(page, paragraph) indexes of running headers, footers and page numbers."""
    n = len(paras_by_page)
    zone_keys: list[dict[str, list[int]]] = []
    for paras, page_texts in zip(paras_by_page, texts, strict=True):
        order = sorted(range(len(paras)), key=lambda k: -paras[k].top)
        zone = set(order[:2] + order[-2:])
        keys: dict[str, list[int]] = {}
        for k in zone:
            key = re.sub(r"\s+", " ", re.sub(r"\d+", "#", page_texts[k].lower())).strip()
            keys.setdefault(key, []).append(k)
        zone_keys.append(keys)
    seen = Counter(key for keys in zone_keys for key in keys)
    need = max(2, n // 2)
    return {
        (p, k)
        for p, keys in enumerate(zone_keys)
        for key, ks in keys.items()
        if (n >= 2 and seen[key] >= need) or _PAGE_NO.match(key)
        for k in ks
    }


@dataclass(frozen=True)
class PdfText:
    text: str
    pages: list[Span]
    running: list[Span]
    warnings: list[str]


_SENTENCE_END = re.compile(r"[.!?:;][\"'”’)\]]*$")


def _continues(a: _Para, b: _Para, low: float, high: float, pitch_limit: float) -> bool:
    """Does paragraph ``b`` (first on its page, its top ``high`` the highest body line there) go on
    with ``a`` (last on the page before, whose lowest body line is at ``low``)? Only when ``a``
    ends at the bottom without ending a sentence, ``b`` starts at the top, and the break looks
    like a wrap (the same rules as inside a page, less the vertical one)."""
    last, first = a.lines[-1], b.lines[0]
    if _SENTENCE_END.search(last[0]) or last[4] > low + 2 * last[5] or first[3] < high - 2 * first[5]:
        return False
    below: Line = (first[0], first[1], first[2], last[4] - last[5], first[4], first[5], first[6])  # as if one line down
    return not _breaks(last, below, a.edge, pitch_limit)


def build_text(pages: Sequence[PageLines]) -> PdfText:
    """The document text of the pages, page spans, and the spans of running lines.

    Running lines go first on their page, so that a paragraph that runs on over a page turn can
    stay one line of the text: then the page boundary falls inside that line (the separator is
    the joining space, or nothing after a rejoined hyphen) and its running lines follow it.
    """
    pitch_limit = _pitch_limit(pages)
    paras_by_page = [_paragraphs(p, pitch_limit) for p in pages]
    words = _Words([line[0] for p in pages for line in p.lines])
    texts = [[_para_text([line[0] for line in para.lines], words) for para in paras] for paras in paras_by_page]
    running = _running(paras_by_page, texts)
    body = [[k for k in range(len(ts)) if (p, k) not in running] for p, ts in enumerate(texts)]
    runs = [[k for k in range(len(ts)) if (p, k) in running] for p, ts in enumerate(texts)]
    out: list[str] = []
    spans: list[Span] = []
    dropped: list[Span] = []
    pos = 0
    carried = False  # this page's first body paragraph goes on from the page before
    for p, page_texts in enumerate(texts):
        order = runs[p] + body[p]
        if carried:
            order = [body[p][0], *runs[p], *body[p][1:]]
        start = pos
        for i, k in enumerate(order):
            t = page_texts[k]
            if i:
                out.append("\n")
                pos += 1
            if (p, k) in running:
                dropped.append(Span(pos, pos + len(t)))
            out.append(t)
            pos += len(t)
        spans.append(Span(start, pos))
        if p + 1 == len(texts):
            break
        last_is_body = bool(body[p]) and order[-1] == body[p][-1]
        carried = (
            last_is_body
            and bool(body[p + 1])
            and _continues(
                paras_by_page[p][body[p][-1]],
                paras_by_page[p + 1][body[p + 1][0]],
                min(line[4] for k in body[p] for line in paras_by_page[p][k].lines),
                max(line[3] for k in body[p + 1] for line in paras_by_page[p + 1][k].lines),
                pitch_limit,
            )
        )
        sep = PAGE_SEP
        if carried:
            prev, nxt = page_texts[body[p][-1]], texts[p + 1][body[p + 1][0]]
            joined = _join(prev, nxt, words)
            if joined.startswith(prev):
                sep = joined[len(prev) : len(joined) - len(nxt)]
            else:  # a typesetter's hyphen at the page's end goes
                sep = ""
                out[-1] = out[-1][:-1]
                pos -= 1
                spans[-1] = Span(spans[-1].start, pos)
        out.append(sep)
        pos += len(sep)
    blank = [str(i + 1) for i, p in enumerate(pages) if not p.n_chars]
    warnings = []
    if blank and len(blank) < len(pages):
        shown = ", ".join(blank[:10]) + (f" and {len(blank) - 10} more" if len(blank) > 10 else "")
        warnings.append(f"page(s) {shown} have no text layer (scanned?): their text is missing -- OCR needed")
    return PdfText("".join(out), spans, sorted(dropped, key=lambda s: s.start), warnings)


# -- spans --------------------------------------------------------------------------------------


def subtract(spans: Sequence[Span], drop: Sequence[Span], text: str) -> list[Span]:
    """``spans`` less every character in ``drop`` (both sorted), whitespace-trimmed, empty pieces gone."""
    out: list[Span] = []
    for s in spans:
        cur = s.start
        for d in drop:
            if d.end <= cur or d.start >= s.end:
                continue
            if d.start > cur:
                out.append(Span(cur, d.start))
            cur = max(cur, d.end)
        if cur < s.end:
            out.append(Span(cur, s.end))
    trimmed = []
    for s in out:
        seg = text[s.start : s.end]
        lead, trail = len(seg) - len(seg.lstrip()), len(seg) - len(seg.rstrip())
        if seg.strip():
            trimmed.append(Span(s.start + lead, s.end - trail))
    return trimmed


class PageMap:
    """Offsets into a document's text -> 1-based page numbers, for one document's page spans
    (sorted and disjoint, as ``Document.pages``). The page ends are indexed once, so a map made
    per document answers each range in O(log pages + pages it covers)."""

    def __init__(self, pages: Sequence[Span]) -> None:
        self.pages = list(pages)
        self._ends = [p.end for p in self.pages]

    def __call__(self, start: int, end: int) -> list[int]:
        """The pages that ``[start, end)`` overlaps (an empty page overlaps nothing); for an
        empty range, the page that holds ``start``. ``[]`` when there are no pages or the range
        lies only between pages."""
        found = []
        for i in range(bisect.bisect_left(self._ends, start), len(self.pages)):
            p = self.pages[i]
            if p.start > start if start == end else p.start >= end:
                break
            if (p.start <= start <= p.end) if start == end else (p.start < end and start < p.end and p.start < p.end):
                found.append(i + 1)
                if start == end:
                    break
        return found


def pages_of(pages: Sequence[Span], start: int, end: int) -> list[int]:
    """1-based numbers of the pages that ``[start, end)`` overlaps (see ``PageMap``, which is
    faster for many ranges of one document)."""
    return PageMap(pages)(start, end)


# -- the reader ---------------------------------------------------------------------------------


def read_pdf(
    path: Path, timeout: float = TIMEOUT_S, max_pages: int = MAX_PAGES, cleaning: Cleaning | None = None
) -> Document:
    """``path`` as a ``Document``; ``cleaning``: the schema package's own line rules, as for ``.txt``."""
    from pipeline.ingest import clean_text_spans

    data = path.read_bytes()
    if b"%PDF-" not in data[:1024]:
        raise InputError(f"{path}: not a PDF (no %PDF- header)", "check the file, or pass its text as .txt")
    try:
        pages: list[PageLines] = run_limited(extract_file, (str(path.resolve()), max_pages), timeout)
    except TimeoutError:
        raise InputError(
            f"{path}: reading the PDF took over {timeout:g} s", "check the file, split it, or pass its text as .txt"
        ) from None
    except ChildProcessError as exc:
        problem, fix = _PROBLEMS["damaged"]
        raise InputError(f"{path}: {problem} ({exc})", fix) from None
    except PdfProblem as exc:
        problem, fix = _PROBLEMS[exc.kind]
        detail = f" ({exc.detail.rstrip('.')})" if exc.detail and exc.kind in ("pages", "damaged") else ""
        raise InputError(f"{path}: {problem}{detail}", fix) from None
    if not any(p.n_chars for p in pages):
        problem, fix = _PROBLEMS["no_text"]
        raise InputError(f"{path}: {problem}", fix)
    built = build_text(pages)
    kept = subtract(clean_text_spans(built.text, cleaning), built.running, built.text)
    if not kept:
        raise InputError(f"{path}: no text left after cleaning", "check that the file holds an article's text")
    return Document(
        doc_id=path.stem,
        path=str(path),
        format="pdf",
        text=built.text,
        kept=kept,
        pages=built.pages,
        warnings=built.warnings,
    )
