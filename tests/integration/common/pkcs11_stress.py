"""Run as a child process by test_pkcs11.py: sign P-256 digests from many threads at once.

A crash inside the PKCS#11 module (SIGSEGV) kills only this process, so the test sees it
as a failed exit status instead of losing the whole pytest run. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key

from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme
from signet.common.pkcs11 import Pkcs11KeyBackend, Pkcs11Pool


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--module", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--pin-file", required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--total", type=int, default=20_000)
    args = parser.parse_args()
    with open(args.pin_file) as handle:
        pin = handle.read().strip()

    pool = Pkcs11Pool(args.module, args.label, pin, size=args.threads)
    backend = Pkcs11KeyBackend(pool)
    key_id = f"stress-{uuid.uuid4().hex}"
    spki = backend.generate(key_id, KeyAlgorithm.EC_P256)
    per_thread = args.total // args.threads
    results: list[list[tuple[bytes, bytes]]] = [[] for _ in range(args.threads)]
    errors: list[str] = []
    start = threading.Barrier(args.threads + 1)
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def work(index: int) -> None:
        nonlocal in_flight, peak
        out = results[index]
        start.wait()
        try:
            for i in range(per_thread):
                digest = hashlib.sha256(f"{index}:{i}".encode()).digest()
                with lock:
                    in_flight += 1
                    peak = max(peak, in_flight)
                signature = backend.sign(
                    key_id, SignatureScheme.ECDSA, HashAlgorithm.SHA256, digest
                )
                with lock:
                    in_flight -= 1
                out.append((digest, signature))
        except Exception as exc:  # noqa: BLE001  (reported to the parent, by type only)
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began

    public = load_der_public_key(spki)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    signed = verified = 0
    for batch in results:
        for digest, signature in batch:
            signed += 1
            try:
                public.verify(signature, digest, algorithm)
                verified += 1
            except InvalidSignature:
                pass
    backend.destroy(key_id)
    pool.close()
    report = {
        "signed": signed,
        "verified": verified,
        "errors": errors,
        "os_locking": pool.module.os_locking,
        "peak_in_flight": peak,
        "seconds": seconds,
        "signs_per_second": signed / seconds if seconds else 0.0,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
