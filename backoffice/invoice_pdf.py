"""The PDF layout of an invoice (order and monthly invoices alike)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import fontpkg
from babel.dates import format_datetime
from fontTools.ttLib import TTFont
from fpdf import FPDF

from .formats import address_lines
from .models import Invoice, InvoiceKind
from .money import to_decimal

#: The PDF's font, from the fontpkg-fira-sans package: Latin (Extended), Greek and Cyrillic.
FONT_FAMILY = "Fira Sans"
_FONT = "fira"  # its name inside the PDF
#: Drawn for a character the font has no glyph for (CJK, emoji, most other scripts).
MISSING = "?"


@cache
def font_files() -> tuple[str, str]:
    """The regular and the bold file of the PDF's font."""
    return (str(fontpkg.path(FONT_FAMILY, weight=400)),
            str(fontpkg.path(FONT_FAMILY, weight=700)))


@cache
def font_charset() -> frozenset[int]:
    """The code points both the regular and the bold font can draw."""
    regular, bold = (frozenset(TTFont(path, lazy=True).getBestCmap()) for path in font_files())
    return regular & bold


def _pdf_text(value) -> str:
    """Text the PDF's font can draw: a character it lacks becomes its compatibility form
    (the "ﬁ" ligature, full-width letters) when the font has that, else ``MISSING``;
    invisible format characters (joiners, direction marks, variation selectors) go."""
    charset = font_charset()
    out = []
    for char in unicodedata.normalize("NFC", str(value or "")):
        if unicodedata.category(char) == "Cf" or 0xFE00 <= ord(char) <= 0xFE0F:
            continue
        if ord(char) in charset:
            out.append(char)
            continue
        compat = unicodedata.normalize("NFKC", char)
        out.append(compat if all(ord(c) in charset for c in compat) else MISSING)
    return "".join(out)


def period_label(invoice: Invoice) -> str:
    """What an invoice covers: its month, or the order it was issued for."""
    if invoice.kind == InvoiceKind.MONTHLY and invoice.period_start:
        return f"{invoice.period_start:%B %Y}"
    return f"Order {invoice.order.number}" if invoice.order else ""


def _pdf_money(amount: int, currency: str) -> str:
    return f"{to_decimal(amount, currency):,} {currency}"


def _pdf_datetime(value: datetime, locale: str) -> str:
    """A UTC timestamp as the console writes it, e.g. ``Nov 22, 2026, 7:38 AM UTC``."""
    return format_datetime(value, "medium", tzinfo=None, locale=locale) + " UTC"


@dataclass(frozen=True)
class Seller:
    """Who issues the invoices (from configuration): printed at the top of each."""

    name: str
    address: tuple[str, ...] = ()
    tax_id: str = ""

    @classmethod
    def from_settings(cls, name: str, address: str, tax_id: str) -> Seller:
        """``address`` is lines separated by "|" or new lines."""
        lines = tuple(part.strip() for part in address.replace("\n", "|").split("|"))
        return cls(name=name.strip(), address=tuple(line for line in lines if line),
                   tax_id=tax_id.strip())

    def lines(self) -> list[str]:
        """The seller block as printed: name, address, tax id."""
        return [line for line in (self.name, *self.address,
                                  f"Tax id {self.tax_id}" if self.tax_id else "") if line]


def invoice_pdf(invoice: Invoice, locale: str = "en_US", seller: Seller | None = None) -> bytes:
    """The invoice as a one-document PDF (fpdf2), in Fira Sans regular and bold, each
    embedded as the subset of glyphs the invoice uses.

    ``locale`` is how the issue date is written (the console's display locale); ``seller``
    is printed at the top.
    """
    pdf = FPDF(format="A4")
    regular, bold = font_files()
    pdf.add_font(_FONT, "", regular)
    pdf.add_font(_FONT, "B", bold)
    pdf.set_title(_pdf_text(f"Invoice {invoice.number}"))
    pdf.add_page()
    if seller is not None:
        pdf.set_font(_FONT, size=9)
        for line in seller.lines():
            pdf.cell(0, 4.5, _pdf_text(line), align="R", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
    pdf.set_font(_FONT, style="B", size=16)
    pdf.cell(0, 10, _pdf_text(f"Invoice {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(_FONT, size=10)
    pdf.cell(0, 6, _pdf_text(f"Issued {_pdf_datetime(invoice.issued_at, locale)}"),
             new_x="LMARGIN", new_y="NEXT")
    period = period_label(invoice)
    if period:
        pdf.cell(0, 6, _pdf_text(f"Period: {period}" if invoice.kind == InvoiceKind.MONTHLY
                                 else period), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font(_FONT, style="B", size=10)
    pdf.cell(0, 6, "Bill to", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(_FONT, size=10)
    for line in billing_lines(invoice.billing, locale):
        pdf.cell(0, 5, _pdf_text(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = (120, 20, 40)
    pdf.set_font(_FONT, style="B", size=10)
    for width, label, align in zip(widths, ("Description", "Qty", "Amount"), "LRR",
                                   strict=True):
        pdf.cell(width, 7, label, border="B", align=align)
    pdf.ln()
    pdf.set_font(_FONT, size=9)
    for item in invoice.lines:
        x, y = pdf.get_x(), pdf.get_y()
        pdf.multi_cell(widths[0], 5, _pdf_text(item.description))
        height = pdf.get_y() - y
        pdf.set_xy(x + widths[0], y)
        pdf.cell(widths[1], height, str(item.quantity), align="R")
        pdf.cell(widths[2], height, _pdf_money(item.amount, invoice.currency), align="R")
        pdf.set_xy(x, y + height)
    pdf.set_font(_FONT, style="B", size=10)
    pdf.cell(widths[0] + widths[1], 8, "Total", border="T")
    pdf.cell(widths[2], 8, _pdf_money(invoice.total, invoice.currency), border="T", align="R")
    return bytes(pdf.output())


def billing_lines(billing: dict, locale: str = "en_US") -> list[str]:
    """The billing snapshot as address lines, laid out as the country writes them."""
    billing = billing or {}
    extra = [f"VAT {billing['vat_number']}"] if billing.get("vat_number") else []
    if billing.get("reseller"):
        extra.append(f"Partner: {billing['reseller']}")
    return address_lines(billing, locale) + extra
