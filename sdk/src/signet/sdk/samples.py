"""Sample data for demos, trials and tests: fresh valid identifiers and a contract PDF.

The identifiers are syntactically valid (GB 11643 and GB 32100 check characters, computed
by identity's own checks) and random, so every run registers new people and enterprises
and stays clear of per-destination rate limits. They belong to nobody.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import date, timedelta

from signet.identity.checks import credit_code_check_character, id_check_character


def _digits(count: int) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(count))


def sample_id_number(region: str = "330106") -> str:
    """A random adult's resident ID number with a correct GB 11643 check character."""
    born = date(1970, 1, 1) + timedelta(days=secrets.randbelow(25 * 365))
    first = region + born.strftime("%Y%m%d") + _digits(3)
    return first + id_check_character(first)


def sample_credit_code(region: str = "330106") -> str:
    """A random unified social credit code with a correct GB 32100 check character."""
    first = "91" + region + _digits(9)
    return first + credit_code_check_character(first)


def sample_phone() -> str:
    """A random mainland mobile number (11 digits)."""
    return "13" + str(5 + secrets.randbelow(5)) + _digits(8)


def _pdf_text(text: str) -> bytes:
    safe = text.encode("latin-1", errors="replace")
    return safe.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def contract_pdf(title: str, lines: Sequence[str] = ()) -> bytes:
    """A one-page A4 PDF 1.7 (classic cross-reference table) with a title and text lines."""
    content = [b"BT /F1 16 Tf 56 780 Td (" + _pdf_text(title) + b") Tj ET"]
    y = 750
    for line in lines:
        content.append(b"BT /F1 11 Tf 56 %d Td (" % y + _pdf_text(line) + b") Tj ET")
        y -= 16
    stream = b"\n".join(content)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream) + 1, stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
