"""Checking a signed PDF as a relying party does: every signature, against the CA roots.

pyHanko validates each embedded signature: the document revision it covers is intact,
the signature is cryptographically valid, and the signer's certificate chains to one of
the trusted roots (the platform's root from GetCaCertificates). A later signature added as
an incremental update leaves the earlier ones valid; :attr:`PdfSignatureReport.modified_after`
says whether anything other than further signatures came after a signature.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext


@dataclass(frozen=True)
class PdfSignatureReport:
    """pyHanko's verdict on one signature of a PDF."""

    field_name: str
    intact: bool
    valid: bool
    trusted: bool
    signer_subject: str
    signing_time: datetime | None
    coverage: str
    modified_after: bool

    @property
    def ok(self) -> bool:
        """Intact, valid, trusted, and nothing but signatures added after it."""
        return self.intact and self.valid and self.trusted and not self.modified_after


def validate_pdf_signatures(
    pdf: bytes, trust_roots_der: Sequence[bytes]
) -> list[PdfSignatureReport]:
    """Every signature of ``pdf`` (in document order), validated against ``trust_roots_der``."""
    roots = [asn1_x509.Certificate.load(der) for der in trust_roots_der]
    reader = PdfFileReader(io.BytesIO(pdf))
    reports = []
    for embedded in reader.embedded_signatures:
        status = validate_pdf_signature(embedded, ValidationContext(trust_roots=roots))
        modification = status.modification_level
        reports.append(
            PdfSignatureReport(
                field_name=str(embedded.field_name),
                intact=bool(status.intact),
                valid=bool(status.valid),
                trusted=bool(status.trusted),
                signer_subject=str(status.signing_cert.subject.human_friendly),
                signing_time=status.signer_reported_dt,
                coverage=status.coverage.name if status.coverage is not None else "UNKNOWN",
                modified_after=modification is not None
                and modification.name not in ("NONE", "LTA_UPDATES", "FORM_FILLING"),
            )
        )
    return reports
