"""``signet-verify PACKAGE``: check an evidence package offline and print pass/fail per item.

Exit status 0 when every check passes, 1 when any fails, 2 when the input cannot be read.
The log key (``--log-key``, PEM as published by GetLogPublicKey) and the CA certificates
(``--ca-cert``, PEM or DER, repeatable) are the only things trusted; without them the
verifier still checks everything it can and fails the trust checks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from signet.evidence.verify import verify_package


def _read_key(path: Path) -> bytes:
    data = path.read_bytes()
    key = load_pem_public_key(data) if b"-----BEGIN" in data else load_der_public_key(data)
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _read_certificates(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(data)]
    return [x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the verifier; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="signet-verify", description="Verify a Signet evidence package offline."
    )
    parser.add_argument("package", type=Path, help="the evidence package (zip)")
    parser.add_argument("--log-key", type=Path, help="the log's public key (PEM or DER)")
    parser.add_argument(
        "--ca-cert",
        type=Path,
        action="append",
        default=[],
        help="a trusted CA certificate (PEM bundle or DER); repeatable",
    )
    args = parser.parse_args(argv)
    try:
        package = args.package.read_bytes()
        log_key = _read_key(args.log_key) if args.log_key else None
        roots = [der for path in args.ca_cert for der in _read_certificates(path)]
    except (OSError, ValueError) as err:
        print(f"signet-verify: cannot read input: {err}", file=sys.stderr)
        return 2
    passed, checks = verify_package(package, log_key_spki=log_key, ca_certificates=roots)
    width = max((len(c.item) for c in checks), default=0)
    for check in checks:
        mark = "PASS" if check.passed else "FAIL"
        print(f"{mark}  {check.item.ljust(width)}  {check.detail}")
    failed = sum(1 for c in checks if not c.passed)
    if passed:
        print(f"\nRESULT: PASS ({len(checks)} checks)")
        return 0
    print(f"\nRESULT: FAIL ({failed} of {len(checks)} checks failed)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
