"""The human-readable report of an evidence package (one self-contained HTML page).

Written for a judge or notary: what was signed, by whom, when and from where, with which
certificate, how the willingness was confirmed, and how to check every statement with the
offline verifier. Every value is escaped; nothing is loaded from outside the page.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #eee; } code { font-size: 0.85em; word-break: break-all; }
.note { color: #444; font-size: 0.9em; }
"""

_TYPE_LABELS = {
    "signet.events.v1.SignatureCreated": "Signature created",
    "signet.events.v1.WillingnessConfirmed": "Willingness confirmed",
    "signet.events.v1.RealNameVerified": "Real-name verification passed",
    "signet.events.v1.CertificateIssued": "Certificate issued",
    "signet.events.v1.CertificateRenewed": "Certificate renewed",
    "signet.events.v1.CertificateRevoked": "Certificate revoked",
    "signet.events.v1.AutoSignGrantIssued": "Automatic-signing grant used",
}


def _cell(value: Any) -> str:
    return f"<td>{escape(str(value if value is not None else ''))}</td>"


def _code(value: Any) -> str:
    return f"<td><code>{escape(str(value if value is not None else ''))}</code></td>"


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{row}</tr>" for row in rows) or (
        f'<tr><td colspan="{len(headers)}">none</td></tr>'
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(document: dict[str, Any]) -> str:
    """The HTML report for a package manifest (before its file list is added)."""
    head = document["tree_head"]
    selector = document["selector"]
    what = (
        f"transaction {selector['transaction_id']}"
        if "transaction_id" in selector
        else f"document digest {selector['document_digest']}"
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Evidence package {escape(document['package_id'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Evidence package for {escape(what)}</h1>",
        _table(
            ["package", "created", "tenant", "log entries"],
            [
                _code(document["package_id"])
                + _cell(document["created_at"])
                + _cell(document["tenant"])
                + _cell(len(document["entries"]))
            ],
        ),
        "<h2>Signatures</h2>",
        _table(
            ["signed at", "account", "document digest", "certificate", "grant", "timestamp"],
            [
                _cell(s["signed_at"])
                + _cell(s["account_id"])
                + _code(s["digest"])
                + _code(s["certificate_serial"])
                + _code(s["grant_id"])
                + _cell("yes" if s["timestamp_token_sha256"] else "no")
                for s in document["signatures"]
            ],
        ),
        "<h2>Certificates (status at the time of signing, as reported by the CA)</h2>",
        _table(
            ["serial", "status at signing", "revoked at", "reason"],
            [
                _code(c["serial"])
                + _cell(c["status_at_signing"].removeprefix("CERTIFICATE_STATUS_"))
                + _cell(c["revoked_at"] or "")
                + _cell(c["revocation_reason"].removeprefix("REVOCATION_REASON_"))
                for c in document["certificates"]
            ],
        ),
        "<h2>Timeline (every entry is in the log, with an inclusion proof)</h2>",
        _table(
            ["#", "time", "what", "account", "operator", "from", "client", "event id"],
            [
                _cell(e["leaf_index"])
                + _cell(e["summary"]["time"])
                + _cell(_TYPE_LABELS.get(e["event_type"], e["event_type"]))
                + _cell(e["summary"]["actor"]["account_id"])
                + _cell(e["summary"]["actor"]["operator_account_id"])
                + _cell(e["summary"]["actor"]["client_ip"])
                + _cell(e["summary"]["actor"]["client"] or e["summary"]["actor"]["service"])
                + _code(e["event_id"])
                for e in document["entries"]
            ],
        ),
        "<h2>Signed tree head</h2>",
        _table(
            ["log id", "tree size", "root hash", "signed at"],
            [
                _code(base64.b64decode(head["log_id"]).hex())
                + _cell(head["tree_size"])
                + _code(base64.b64decode(head["root_hash"]).hex())
                + _cell(head["timestamp"])
            ],
        ),
        "<h2>How to verify</h2>",
        "<p class='note'>Every statement above can be checked without trusting the platform: "
        "run <code>signet-verify PACKAGE --log-key LOG_KEY.pem --ca-cert ROOT.pem</code> with "
        "the log's published public key and the CA's root certificate. It recomputes every "
        "hash, inclusion proof and signature, checks the certificate paths, the revocation "
        "status at signing time and the timestamps, and prints a pass or fail per item. The "
        "report itself is informative; the manifest and the files it lists are the evidence."
        "</p>",
        "<h3>Log public key</h3>",
        f"<pre>{escape(document['log']['public_key_pem'])}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)
