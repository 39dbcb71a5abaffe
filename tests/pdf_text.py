"""The text of a PDF as a reader sees it (pypdf), for tests of the invoice PDFs."""

from __future__ import annotations

import io

from pypdf import PdfReader


def pdf_text(data: bytes) -> str:
    """Every page's text, one line per printed line, pages joined by a new line."""
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def pdf_fonts(data: bytes) -> set[str]:
    """The base names of the fonts the PDF's pages use (``ABCDEF+FiraSansBold``)."""
    reader = PdfReader(io.BytesIO(data))
    names = set()
    for page in reader.pages:
        fonts = page["/Resources"]["/Font"]
        names |= {str(fonts[key].get_object()["/BaseFont"]).lstrip("/") for key in fonts}
    return names
