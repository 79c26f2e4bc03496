"""Witnesses: places outside the log that keep its signed tree heads.

A witness that kept an old head detects a rewritten log: the log cannot produce a valid
consistency proof from that head to any later one. :class:`FileWitness` is such a keeper
on a file system (e.g. a mounted bucket or another operator's volume); it checks every head
it receives against the last one it kept and refuses (and flags) an inconsistent one.
:class:`HttpWitness` posts each head, with its consistency proof, to an external service.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from signet.evidence import merkle
from signet.evidence.domain import ConsistencyProof
from signet.evidence.treehead import SignedTreeHead, TreeHeadError, verify_tree_head

ALERT_FILE = "ALERT-inconsistent-log.json"


class WitnessError(RuntimeError):
    """A head the witness will not accept (bad signature, or inconsistent with a kept head)."""


def head_document(
    head: SignedTreeHead, public_key_pem: str, consistency: ConsistencyProof | None
) -> dict[str, Any]:
    """The JSON document a witness receives."""
    document: dict[str, Any] = {"tree_head": head.to_json(), "log_public_key_pem": public_key_pem}
    if consistency is not None:
        document["consistency"] = {
            "first_tree_size": consistency.first_size,
            "hashes": [base64.b64encode(h).decode() for h in consistency.hashes],
        }
    return document


def _spki(public_key_pem: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    key = load_pem_public_key(public_key_pem.encode())
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


class FileWitness:
    """Keeps every head in ``directory/<log id hex>/``; checks consistency with the last one."""

    def __init__(self, directory: str | Path) -> None:
        self._root = Path(directory)

    def latest(self, log_id: bytes) -> SignedTreeHead | None:
        """The largest head kept for the log ``log_id``."""
        path = self._root / log_id.hex() / "latest.json"
        if not path.exists():
            return None
        return SignedTreeHead.from_json(json.loads(path.read_text())["tree_head"])

    def export(
        self, head: SignedTreeHead, public_key_pem: str, consistency: ConsistencyProof | None
    ) -> None:
        """Check ``head`` (signature; consistency with the last kept head) and keep it."""
        try:
            verify_tree_head(head, _spki(public_key_pem))
        except (TreeHeadError, ValueError) as err:
            raise WitnessError("the tree head signature does not verify") from err
        directory = self._root / head.log_id.hex()
        directory.mkdir(parents=True, exist_ok=True)
        previous = self.latest(head.log_id)
        if previous is not None:
            self._check(previous, head, consistency, directory)
        document = head_document(head, public_key_pem, consistency)
        name = f"{head.tree_size:012d}-{head.timestamp_ms}.json"
        _write_atomically(directory / name, document)
        if previous is None or head.tree_size >= previous.tree_size:
            _write_atomically(directory / "latest.json", document)

    def _check(
        self,
        previous: SignedTreeHead,
        head: SignedTreeHead,
        consistency: ConsistencyProof | None,
        directory: Path,
    ) -> None:
        if head.tree_size < previous.tree_size:
            return  # an older head arriving late; kept, nothing to prove
        if head.tree_size == previous.tree_size:
            if head.root_hash != previous.root_hash:
                self._alert(directory, previous, head, "same size, different root")
            return
        if consistency is None or consistency.first_size != previous.tree_size:
            # No proof from our last head: keep it, a later head with a proof will tell.
            return
        try:
            merkle.verify_consistency(
                previous.tree_size,
                head.tree_size,
                previous.root_hash,
                head.root_hash,
                list(consistency.hashes),
            )
        except merkle.ProofError:
            self._alert(directory, previous, head, "consistency proof fails")

    @staticmethod
    def _alert(
        directory: Path, previous: SignedTreeHead, head: SignedTreeHead, reason: str
    ) -> None:
        _write_atomically(
            directory / ALERT_FILE,
            {"reason": reason, "kept": previous.to_json(), "received": head.to_json()},
        )
        raise WitnessError(f"the log is inconsistent with a kept tree head: {reason}")


def _write_atomically(path: Path, document: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


class HttpWitness:
    """POSTs each head document as JSON to ``url``; any non-2xx answer is a failure."""

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("a witness URL must be http:// or https://")
        self._url = url
        self._timeout = timeout_seconds

    def export(
        self, head: SignedTreeHead, public_key_pem: str, consistency: ConsistencyProof | None
    ) -> None:
        """Deliver one head; raise WitnessError unless the witness accepted it."""
        body = json.dumps(head_document(head, public_key_pem, consistency)).encode()
        request = urllib.request.Request(  # noqa: S310  (scheme checked in __init__)
            self._url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                status = int(response.status)
        except urllib.error.HTTPError as err:
            raise WitnessError(f"witness answered HTTP {err.code}") from err
        except (urllib.error.URLError, OSError) as err:
            raise WitnessError(f"witness unreachable: {type(err).__name__}") from err
        if not 200 <= status < 300:
            raise WitnessError(f"witness answered HTTP {status}")
