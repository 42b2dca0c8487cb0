"""Make real PDFs from known text at test time with reportlab (BSD licence, a dev dependency).

``draw_lines`` puts exact lines on exact pages (for checking offsets, pages, hyphens and running
lines); ``typeset`` lets reportlab's own paragraph layout wrap and justify text, in one or two
columns, with a running header and a page-number footer (for the seeds and the benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

WIDTH, HEIGHT = A4
MARGIN = 72.0


def _font(name: str) -> str:
    """Standard fonts by name; "Vera" is the TrueType font reportlab ships (it has ligature glyphs)."""
    if name == "Vera" and "Vera" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("Vera", "Vera.ttf"))
    return name


def _running(c: canvas.Canvas, page: int, total: int, header: str | None, footer: str | None, font: str) -> None:
    c.setFont(font, 9)
    if header:
        c.drawString(MARGIN, HEIGHT - MARGIN / 2, header)
    if footer:
        c.drawCentredString(WIDTH / 2, MARGIN / 2, footer.format(n=page, total=total))


def wrap(text: str, width: float, font: str, size: float) -> list[str]:
    """Greedy line filling. ``~`` in a word marks where it may be hyphenated ("treat~ment"); a
    word with its own hyphen may break after it ("long-~term" keeps its hyphen)."""
    lines: list[str] = []
    cur = ""
    for word in text.split():
        plain = word.replace("~", "")
        trial = f"{cur} {plain}" if cur else plain
        if pdfmetrics.stringWidth(trial, font, size) <= width:
            cur = trial
            continue
        parts = word.split("~")
        for k in range(len(parts) - 1, 0, -1):
            head = "".join(parts[:k])
            head = head if head.endswith("-") else head + "-"
            trial = f"{cur} {head}" if cur else head
            if pdfmetrics.stringWidth(trial, font, size) <= width:
                lines.append(trial)
                cur = "".join(parts[k:])
                break
        else:
            if cur:
                lines.append(cur)
            cur = plain
    if cur:
        lines.append(cur)
    return lines


def draw_lines(
    path: Path,
    pages: Sequence[Sequence[str]],
    *,
    header: str | None = None,
    footer: str | None = "Page {n} of {total}",
    font: str = "Helvetica",
    size: float = 11,
    leading: float = 14,
    width: float = 300,
    header_from: int = 1,
    encrypt: str | None = None,
) -> Path:
    """Each page's paragraphs wrapped to ``width`` points (see ``wrap``), top to bottom, a blank
    line after each; the running header (from page ``header_from`` on) and footer are drawn
    before the body."""
    font = _font(font)
    c = canvas.Canvas(str(path), pagesize=A4, encrypt=encrypt, invariant=1)
    for n, paragraphs in enumerate(pages, 1):
        _running(c, n, len(pages), header if n >= header_from else None, footer, font)
        c.setFont(font, size)
        y = HEIGHT - MARGIN
        for para in paragraphs:
            for line in wrap(para, width, font, size):
                c.drawString(MARGIN, y, line)
                y -= leading
            y -= leading
        c.showPage()
    c.save()
    return path


def typeset(
    path: Path,
    paragraphs: Sequence[str],
    *,
    header: str | None = None,
    footer: str | None = "Page {n}",
    columns: int = 1,
    font: str = "Times-Roman",
    size: float = 10,
    justify: bool = True,
) -> Path:
    """Paragraphs laid out by reportlab (wrapped, justified), page after page."""
    from reportlab.lib.enums import TA_JUSTIFY, TA_LEFT
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

    font = _font(font)
    style = ParagraphStyle(
        "body", fontName=font, fontSize=size, leading=size * 1.2, spaceAfter=size * 0.6,
        alignment=TA_JUSTIFY if justify else TA_LEFT,
    )  # fmt: skip
    gap = 18.0
    width = (WIDTH - 2 * MARGIN - gap * (columns - 1)) / columns
    frames = [
        Frame(MARGIN + i * (width + gap), MARGIN, width, HEIGHT - 2 * MARGIN, id=f"col{i}", showBoundary=0)
        for i in range(columns)
    ]

    def on_page(c: canvas.Canvas, doc: BaseDocTemplate) -> None:
        _running(c, doc.page, 0, header, footer, font)

    doc = BaseDocTemplate(str(path), pagesize=A4, invariant=1)
    doc.addPageTemplates([PageTemplate(id="body", frames=frames, onPage=on_page)])
    doc.build([Paragraph(escape(p), style) for p in paragraphs if p.strip()])
    return path


def image_only(path: Path, text: str) -> Path:
    """A page that is one picture of text: no text layer, as a scan without OCR."""
    from PIL import Image, ImageDraw
    from reportlab.lib.utils import ImageReader

    img = Image.new("RGB", (1200, 400), "white")
    ImageDraw.Draw(img).text((40, 40), text, fill="black")
    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    c.drawImage(ImageReader(img), MARGIN, HEIGHT / 2, width=WIDTH - 2 * MARGIN, height=150)
    c.showPage()
    c.save()
    return path
