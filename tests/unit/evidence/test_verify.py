"""The offline verifier on packages that are not packages at all."""

from __future__ import annotations

import io
import json
import zipfile

from signet.evidence.verify import verify_package


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_file_that_is_not_a_zip_fails_with_the_reason() -> None:
    passed, checks = verify_package(b"not a zip", log_key_spki=None, ca_certificates=[])
    assert not passed
    assert [(c.item, c.passed, c.detail) for c in checks] == [
        ("package format", False, "not a zip file")
    ]


def test_a_zip_without_a_manifest_fails() -> None:
    passed, checks = verify_package(
        _zip({"report.html": b"<html/>"}), log_key_spki=None, ca_certificates=[]
    )
    assert not passed
    assert checks[0].detail == "manifest.json is missing"


def test_an_unknown_format_fails() -> None:
    manifest = json.dumps({"format": "something-else/9"}).encode()
    passed, checks = verify_package(
        _zip({"manifest.json": manifest}), log_key_spki=None, ca_certificates=[]
    )
    assert not passed
    assert "unknown package format" in checks[0].detail


def test_a_damaged_compressed_member_fails_instead_of_raising() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps({"format": "x", "pad": "ab" * 4000}))
    package = bytearray(buffer.getvalue())
    # Flip bytes inside the deflated data (after the 30-byte local header and the name).
    start = 30 + len("manifest.json") + 10
    for offset in range(start, start + 8):
        package[offset] ^= 0xFF
    passed, checks = verify_package(bytes(package), log_key_spki=None, ca_certificates=[])
    assert not passed
    assert checks[0].item == "package format"
    assert not checks[0].passed
    assert "damaged" in checks[0].detail or "not a zip" in checks[0].detail


def test_a_manifest_that_is_not_json_fails() -> None:
    passed, checks = verify_package(
        _zip({"manifest.json": b"{not json"}), log_key_spki=None, ca_certificates=[]
    )
    assert not passed
    assert checks[0].detail == "manifest.json is not JSON"
