"""The invoice PDF's font: names in Latin Extended, Greek and Cyrillic print as written;
what the font cannot draw prints as "?" and never fails the download."""

from __future__ import annotations

import os

import pytest

from backoffice import accounts
from backoffice.extensions import db
from backoffice.invoice_pdf import MISSING, _pdf_text, font_charset, font_files
from tests import factories
from tests.pdf_text import pdf_fonts, pdf_text


def _order_invoice(name: str, city: str, country: str, company: str = "") -> int:
    factories.catalog("billing")
    buyer = accounts.create_profile(email="buyer@example.com", name=name)
    billing = {"name": name, "company": company, "address1": "1 Main Street", "city": city,
               "postal_code": "00-001", "country": country}
    order = accounts.place_order(buyer, items={"DV": 1}, billing=billing)
    invoice_id = order.invoice.id
    db.session.commit()
    return invoice_id


@pytest.mark.parametrize(("name", "city", "country"), [
    ("Zakład Łódź Sp. z o.o.", "Łódź", "PL"),
    ("Ελληνική Εταιρεία", "Αθήνα", "GR"),
    ("ООО Ромашка", "Москва", "RU"),
    ("İstanbul Yazılım A.Ş.", "İstanbul", "TR"),
])
def test_names_outside_latin_1_print_in_the_pdf(appctx, client_as, name, city, country):
    with appctx():
        invoice_id = _order_invoice(name, city, country)
    client = client_as("finance")
    pdf = client.get(f"/admin/billing/invoice/{invoice_id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = pdf_text(pdf.data)
    assert name in text.splitlines() and f"00-001 {city}" in text.splitlines()
    assert MISSING not in text
    fonts = pdf_fonts(pdf.data)  # the font's subsets, six-letter tag first
    assert {font.split("+")[1] for font in fonts} == {"FiraSans", "FiraSansBold"}
    assert all(len(font.split("+")[0]) == 6 for font in fonts)
    html = client.get(f"/admin/billing/invoice/{invoice_id}").get_data(as_text=True)
    assert name in html and city in html


@pytest.mark.parametrize(("name", "company", "printed"), [
    ("株式会社テスト", "東京", "???????"),
    ("Zoë 😀 Buyer", "Café\u200d ❤\ufe0f Ltd", "Zoë ? Buyer"),
])
def test_what_the_font_cannot_draw_prints_as_a_question_mark(appctx, client_as, name,
                                                             company, printed):
    with appctx():
        invoice_id = _order_invoice(name, "Leeds", "GB", company=company)
    client = client_as("finance")
    pdf = client.get(f"/admin/billing/invoice/{invoice_id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    lines = pdf_text(pdf.data).splitlines()
    assert printed in lines and "Leeds" in " ".join(lines)
    html = client.get(f"/admin/billing/invoice/{invoice_id}").get_data(as_text=True)
    assert name in html  # the page shows the name as entered


def test_the_pdf_embeds_only_the_glyphs_it_uses(appctx, client_as):
    with appctx():
        invoice_id = _order_invoice("Ελληνική Εταιρεία ООО Ромашка Zakład Łódź", "Łódź", "PL")
    pdf = client_as("finance").get(f"/admin/billing/invoice/{invoice_id}.pdf").data
    assert all(os.path.getsize(path) > 300_000 for path in font_files())
    assert len(pdf) < 40_000, len(pdf)  # two small subsets, compressed


def test_the_font_covers_latin_extended_greek_and_cyrillic():
    wanted = {*range(0x0100, 0x0180),  # Latin Extended-A
              *range(0x0391, 0x03A2), *range(0x03A3, 0x03CA),  # Greek letters
              *range(0x0400, 0x0460),  # Cyrillic
              *map(ord, "€₺₽№–—‘’“”…×")}
    assert not wanted - font_charset()


@pytest.mark.parametrize(("given", "printed"), [
    ("Łódź Αθήνα Москва İzmir € – — × ß", "Łódź Αθήνα Москва İzmir € – — × ß"),
    ("Zoe\u0308", "Zoë"),  # composed: the font has ë
    ("Ｇｍｂｈ ① 5㎏", "Gmbh 1 5kg"),  # full-width and other compatibility forms
    ("東京 Ltd", "?? Ltd"),
    ("a\u200db\u200ec\ufe0f", "abc"),  # joiners, direction marks, variation selectors go
    ("", ""),
    (None, ""),
])
def test_pdf_text_keeps_what_the_font_draws(given, printed):
    assert _pdf_text(given) == printed
