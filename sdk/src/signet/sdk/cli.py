"""``signet``: the Signet APIs and flows from the command line.

By default it talks to the local platform (``make run``: addresses from the local platform
code, the ``local-admin`` token from ``<state>/tokens.json``); ``--<service>`` flags or
``SIGNET_SDK_<SERVICE>_TARGETS`` name other addresses (comma-separated for replicas), and
``--token`` or ``SIGNET_SDK_TOKEN`` another bearer token. Replies are printed as JSON;
failures as ``error: CODE: message`` on stderr with exit status 1 (2 for bad usage).

Examples::

    signet demo                               # the whole story against make run
    signet tenant create "Acme Contracts"
    signet account get acct-...
    signet cert ca --out roots.pem
    signet sign pdf in.pdf out.pdf --account acct-... --certificate 1a2b... --code-from prompt
    signet evidence export tx-... --out evidence.zip
    signet evidence verify evidence.zip --log-key log.pem --ca-cert roots.pem
    signet webhook register --tenant t-... https://example.com/hooks
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message

from signet.ca_gateway.v1 import ca_gateway_pb2
from signet.identity.v1 import identity_pb2
from signet.notify.v1 import notify_pb2
from signet.sdk.client import DEFAULT_TIMEOUT, SERVICES, Endpoints, Signet, local_token
from signet.sdk.errors import SignetError
from signet.sdk.flows import Flows, Inbox, Signatory
from signet.signer.v1 import signer_pb2


def _print(message: Message) -> None:
    print(MessageToJson(message, indent=2, preserving_proto_field_name=True))


class _PromptInbox:
    """Codes typed by the person who received them (the CLI's default)."""

    def expect_code(self, channel: str, destination: str) -> Callable[[float], str]:
        """Ask for the code once it was sent."""

        def wait(timeout: float) -> str:
            return input(f"one-time code sent by {channel}: ").strip()

        return wait

    def expect_transfer(self, credit_code: str) -> Callable[[float], int]:
        """Ask for the transfer amount once it was made."""

        def wait(timeout: float) -> int:
            return int(input("amount of the verification transfer (fen): ").strip())

        return wait


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir).resolve()
    from signet.common.local import platform

    return platform.state_dir()


def _client(args: argparse.Namespace) -> Signet:
    base = Endpoints.local().with_env()
    overrides = {
        name: getattr(args, name.replace("-", "_"))
        for name in SERVICES
        if getattr(args, name.replace("-", "_"))
    }
    if overrides:
        targets = {name: overrides.get(name) or list(base.of(name)) for name in SERVICES}
        base = Endpoints.create(targets)
    token = (
        args.token or os.environ.get("SIGNET_SDK_TOKEN") or local_token(state_dir=_state_dir(args))
    )
    return Signet(base, token, timeout=args.timeout)


def _inbox(args: argparse.Namespace) -> Inbox:
    if getattr(args, "code_from", "prompt") == "sandbox":
        from signet.common.local.sandbox import SandboxInbox

        return SandboxInbox.for_state_dir(_state_dir(args))
    return _PromptInbox()


# ---- commands ---------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole story against the local platform and print each step."""
    from signet.common.local.sandbox import SandboxInbox
    from signet.sdk.demo import run_demo

    state = _state_dir(args)
    out = Path(args.out) if args.out else state / "demo"
    steps = 0

    def say(text: str) -> None:
        nonlocal steps
        steps += 1
        print(f"[{steps:2d}] {text}", flush=True)

    try:
        with _client(args) as client:
            report = run_demo(
                client, SandboxInbox.for_state_dir(state), out, say, timeout=args.wait
            )
    except SignetError:
        print("RESULT: FAIL", flush=True)
        raise
    print()
    print("summary")
    print(f"  tenant            {report.tenant_id}")
    print(f"  accounts          {', '.join(f'{k} {v}' for k, v in report.accounts.items())}")
    print(f"  certificates      {len(report.certificates)} issued")
    print(f"  transaction       {report.transaction_id}")
    print(f"  signatures        {', '.join(report.signatures)} (+ auto {report.auto_signature})")
    print(f"  PDF signatures    {report.pdf_signatures_valid} valid: {report.signed_pdf}")
    print(f"  evidence          {report.evidence_checks} checks passed: {report.evidence_package}")
    print(f"  mails             {sum(report.mails.values())} expected mails, each once")
    print(f"  webhooks          {len(report.webhook_deliveries)} events, each delivered once")
    print(f"  took              {report.seconds:.1f}s")
    print("RESULT: PASS")
    return 0


def cmd_tenant_create(args: argparse.Namespace) -> int:
    """Create a tenant."""
    with _client(args) as client:
        _print(client.identity.CreateTenant(identity_pb2.CreateTenantRequest(name=args.name)))
    return 0


def cmd_tenant_get(args: argparse.Namespace) -> int:
    """Show a tenant."""
    with _client(args) as client:
        _print(client.identity.GetTenant(identity_pb2.GetTenantRequest(tenant_id=args.tenant_id)))
    return 0


def cmd_account_get(args: argparse.Namespace) -> int:
    """Show an account (personal data masked)."""
    with _client(args) as client:
        _print(
            client.identity.GetAccount(identity_pb2.GetAccountRequest(account_id=args.account_id))
        )
    return 0


def cmd_account_register_person(args: argparse.Namespace) -> int:
    """Register a person (not yet verified)."""
    with _client(args) as client:
        _print(
            client.identity.RegisterAccount(
                identity_pb2.RegisterAccountRequest(
                    tenant_id=args.tenant,
                    person=identity_pb2.PersonRegistration(
                        name=args.name, phone=args.phone, email=args.email
                    ),
                    locale=args.locale,
                )
            )
        )
    return 0


def cmd_account_onboard_person(args: argparse.Namespace) -> int:
    """Register, verify (ID + phone code) and certify a person."""
    with _client(args) as client:
        flows = Flows(client, _inbox(args), code_timeout=args.wait)
        person = flows.onboard_person(
            args.tenant,
            name=args.name,
            id_number=args.id_number,
            phone=args.phone,
            email=args.email,
            locale=args.locale,
        )
    _print(person.account)
    _print(person.certificate)
    return 0


def cmd_cert_get(args: argparse.Namespace) -> int:
    """Show a certificate; ``--out`` writes it with its chain as PEM."""
    with _client(args) as client:
        reply = client.ca_gateway.GetCertificate(
            ca_gateway_pb2.GetCertificateRequest(serial=args.serial, include_chain=True)
        )
    if args.out:
        Path(args.out).write_text(reply.certificate.pem + reply.chain_pem)
    _print(reply.certificate)
    return 0


def cmd_cert_list(args: argparse.Namespace) -> int:
    """List a tenant's (or an account's) certificates."""
    with _client(args) as client:
        _print(
            client.ca_gateway.ListCertificates(
                ca_gateway_pb2.ListCertificatesRequest(
                    tenant_id=args.tenant, account_id=args.account or ""
                )
            )
        )
    return 0


def cmd_cert_ca(args: argparse.Namespace) -> int:
    """The platform's CA certificates; ``--out`` writes the roots as PEM (a trust store)."""
    with _client(args) as client:
        reply = client.ca_gateway.GetCaCertificates(ca_gateway_pb2.GetCaCertificatesRequest())
    if args.out:
        roots = [c.pem for c in reply.certificates if c.role == ca_gateway_pb2.CA_ROLE_ROOT]
        Path(args.out).write_text("".join(roots))
    for cert in reply.certificates:
        print(f"{ca_gateway_pb2.CaRole.Name(cert.role):24} {cert.ca_id:12} {cert.subject}")
    return 0


def cmd_sign_pdf(args: argparse.Namespace) -> int:
    """Sign a PDF with a willingness check (PAdES); writes the signed PDF."""
    with _client(args) as client:
        cert = client.ca_gateway.GetCertificate(
            ca_gateway_pb2.GetCertificateRequest(serial=args.certificate, include_chain=True)
        )
        signatory = Signatory(
            tenant_id=cert.certificate.tenant_id,
            account_id=args.account,
            key_id=cert.certificate.key_id,
            certificate_serial=cert.certificate.serial,
            certificate_chain_der=(cert.certificate.der, *cert.chain_der),
            phone=args.destination if not args.email else "",
            email=args.destination if args.email else "",
            operator_account_id=args.operator or "",
        )
        flows = Flows(client, _inbox(args), code_timeout=args.wait)
        signed = flows.sign_pdf(
            signatory,
            Path(args.input).read_bytes(),
            transaction_id=args.transaction,
            field_name=args.field,
            method=identity_pb2.WILLINGNESS_METHOD_EMAIL_CODE
            if args.email
            else identity_pb2.WILLINGNESS_METHOD_SMS_CODE,
            level=signer_pb2.SIGNATURE_LEVEL_B_T
            if args.timestamp
            else signer_pb2.SIGNATURE_LEVEL_B_B,
        )
    Path(args.output).write_bytes(signed.pdf)
    print(f"signature {signed.signature_id} (grant {signed.grant_id}) -> {args.output}")
    return 0


def cmd_evidence_export(args: argparse.Namespace) -> int:
    """Export a transaction's evidence package, with the log key and CA roots beside it."""
    with _client(args) as client:
        flows = Flows(client, _PromptInbox())
        bundle = flows.export_evidence(args.transaction_id, args.tenant or "")
    out = Path(args.out or bundle.file_name)
    out.write_bytes(bundle.package)
    key = out.with_name(out.stem + "-log-key.pem")
    key.write_text(bundle.log_public_key_pem)
    roots = out.with_name(out.stem + "-roots.pem")
    roots.write_text(
        "".join(
            x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
            for der in bundle.ca_certificates_der
        )
    )
    print(f"{out} ({bundle.entry_count} entries); verify with:")
    print(f"  signet evidence verify {out} --log-key {key} --ca-cert {roots}")
    return 0


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    """Verify a package offline (the evidence verifier, no server involved)."""
    from signet.evidence.cli import main as verify_main

    argv = [args.package]
    if args.log_key:
        argv += ["--log-key", args.log_key]
    for cert in args.ca_cert:
        argv += ["--ca-cert", cert]
    return verify_main(argv)


def cmd_webhook_register(args: argparse.Namespace) -> int:
    """Register a tenant's webhook endpoint; prints its secret (shown only now)."""
    with _client(args) as client:
        _print(
            client.notify.RegisterWebhookEndpoint(
                notify_pb2.RegisterWebhookEndpointRequest(
                    tenant_id=args.tenant, url=args.url, event_types=args.event_type
                )
            )
        )
    return 0


def cmd_webhook_list(args: argparse.Namespace) -> int:
    """List a tenant's webhook endpoints."""
    with _client(args) as client:
        _print(
            client.notify.ListWebhookEndpoints(
                notify_pb2.ListWebhookEndpointsRequest(tenant_id=args.tenant)
            )
        )
    return 0


def cmd_notification_status(args: argparse.Namespace) -> int:
    """Delivery state of a notification with its attempts."""
    with _client(args) as client:
        _print(
            client.notify.GetDeliveryStatus(
                notify_pb2.GetDeliveryStatusRequest(notification_id=args.notification_id)
            )
        )
    return 0


# ---- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="signet",
        description="Call Signet's APIs and run its flows (default: the local platform).",
    )
    parser.add_argument("--token", help="bearer token (default: SIGNET_SDK_TOKEN, local-admin)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="call deadline (s)")
    parser.add_argument("--state-dir", help="local platform state dir (default SIGNET_STATE_DIR)")
    for name in SERVICES:
        parser.add_argument(
            f"--{name}", metavar="ADDRS", help=f"{name} address(es), comma-separated"
        )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the whole flow against make run, step by step")
    demo.add_argument("--out", help="where the signed PDF and evidence go (default <state>/demo)")
    demo.add_argument("--wait", type=float, default=90.0, help="wait for codes/events (s)")
    demo.set_defaults(func=cmd_demo)

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(dest="action", required=True)
    p = tenant.add_parser("create", help="create a tenant")
    p.add_argument("name")
    p.set_defaults(func=cmd_tenant_create)
    p = tenant.add_parser("get", help="show a tenant")
    p.add_argument("tenant_id")
    p.set_defaults(func=cmd_tenant_get)

    account = sub.add_parser("account", help="accounts").add_subparsers(
        dest="action", required=True
    )
    p = account.add_parser("get", help="show an account")
    p.add_argument("account_id")
    p.set_defaults(func=cmd_account_get)
    for action, func, help_text in (
        ("register-person", cmd_account_register_person, "register a person"),
        ("onboard-person", cmd_account_onboard_person, "register, verify and certify a person"),
    ):
        p = account.add_parser(action, help=help_text)
        p.add_argument("--tenant", required=True)
        p.add_argument("--name", required=True)
        p.add_argument("--phone", required=True)
        p.add_argument("--email", default="")
        p.add_argument("--locale", default="en")
        if action == "onboard-person":
            p.add_argument("--id-number", required=True)
            _code_options(p)
        p.set_defaults(func=func)

    cert = sub.add_parser("cert", help="certificates").add_subparsers(dest="action", required=True)
    p = cert.add_parser("get", help="show a certificate")
    p.add_argument("serial")
    p.add_argument("--out", help="write certificate + chain as PEM")
    p.set_defaults(func=cmd_cert_get)
    p = cert.add_parser("list", help="list certificates")
    p.add_argument("--tenant", required=True)
    p.add_argument("--account")
    p.set_defaults(func=cmd_cert_list)
    p = cert.add_parser("ca", help="the CA certificates")
    p.add_argument("--out", help="write the root CA certificates as PEM")
    p.set_defaults(func=cmd_cert_ca)

    sign = sub.add_parser("sign", help="signing").add_subparsers(dest="action", required=True)
    p = sign.add_parser("pdf", help="sign a PDF (PAdES) after a willingness check")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--account", required=True, help="the signing account")
    p.add_argument("--certificate", required=True, help="serial of its certificate")
    p.add_argument("--operator", help="operator account acting for an enterprise")
    p.add_argument("--transaction", default="", help="business transaction id")
    p.add_argument("--field", default="Signature1", help="signature field name")
    p.add_argument("--email", action="store_true", help="code by email instead of SMS")
    p.add_argument("--timestamp", action="store_true", help="PAdES B-T (needs a TSA)")
    p.add_argument("--destination", default="", help="phone/email the code goes to (sandbox)")
    _code_options(p)
    p.set_defaults(func=cmd_sign_pdf)

    evidence = sub.add_parser("evidence", help="evidence").add_subparsers(
        dest="action", required=True
    )
    p = evidence.add_parser("export", help="export a transaction's evidence package")
    p.add_argument("transaction_id")
    p.add_argument("--tenant")
    p.add_argument("--out")
    p.set_defaults(func=cmd_evidence_export)
    p = evidence.add_parser("verify", help="verify a package offline")
    p.add_argument("package")
    p.add_argument("--log-key")
    p.add_argument("--ca-cert", action="append", default=[])
    p.set_defaults(func=cmd_evidence_verify)

    webhook = sub.add_parser("webhook", help="webhook endpoints").add_subparsers(
        dest="action", required=True
    )
    p = webhook.add_parser("register", help="register an endpoint")
    p.add_argument("url")
    p.add_argument("--tenant", required=True)
    p.add_argument("--event-type", action="append", default=[])
    p.set_defaults(func=cmd_webhook_register)
    p = webhook.add_parser("list", help="list a tenant's endpoints")
    p.add_argument("--tenant", required=True)
    p.set_defaults(func=cmd_webhook_list)

    notification = sub.add_parser("notification", help="notifications").add_subparsers(
        dest="action", required=True
    )
    p = notification.add_parser("status", help="delivery state of a notification")
    p.add_argument("notification_id")
    p.set_defaults(func=cmd_notification_status)
    return parser


def _code_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--code-from",
        choices=["prompt", "sandbox"],
        default="prompt",
        help="type the code in, or read it from the local sandbox",
    )
    parser.add_argument("--wait", type=float, default=60.0, help="wait for a code (s)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except SignetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except grpc.RpcError as err:  # a stub made outside the SDK client
        print(f"error: {SignetError.from_rpc_error(err)}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
