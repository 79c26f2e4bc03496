"""A SoftHSM2 token under the local state dir, for ``make run`` and the test suite.

Production talks to a cloud HSM whose module path, token label and PIN are deployment
values; this module only exists so that a developer machine and the tests have a real
PKCS#11 token without any manual set-up. :func:`ensure_token` is idempotent: it writes a
``softhsm2.conf`` whose token directory lives under the state dir, initialises the token
with ``softhsm2-util`` when it is absent, and returns what a process needs to use it.

The token is initialised by the ``softhsm2-util`` tool in a child process rather than
through PKCS#11 here, so that the calling process never loads the module before
``SOFTHSM2_CONF`` is set (SoftHSM reads its configuration once, at ``C_Initialize``).

PINs for local development come from ``SIGNET_SOFTHSM_PIN`` / ``SIGNET_SOFTHSM_SO_PIN``,
or are generated once and kept in a mode-0600 file under the state dir.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PIN_ENV = "SIGNET_SOFTHSM_PIN"
SO_PIN_ENV = "SIGNET_SOFTHSM_SO_PIN"
MODULE_ENV = "SIGNET_SOFTHSM_MODULE"
DEFAULT_LABEL = "signet"

# Where distributions install the module; the first that exists wins.
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


class SoftHsmError(RuntimeError):
    """SoftHSM is missing or the token could not be prepared (a local set-up problem)."""


@dataclass(frozen=True)
class TokenInfo:
    """Everything a process needs to open the local token."""

    module_path: Path
    label: str
    conf_path: Path
    pin: str = field(repr=False)
    so_pin: str = field(repr=False)

    @property
    def env(self) -> Mapping[str, str]:
        """Environment a process needs before it loads the module."""
        return {"SOFTHSM2_CONF": str(self.conf_path)}


def find_module() -> Path:
    """The SoftHSM2 PKCS#11 module: ``SIGNET_SOFTHSM_MODULE`` or the usual install paths."""
    configured = os.environ.get(MODULE_ENV)
    candidates: Sequence[str] = (configured,) if configured else MODULE_CANDIDATES
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file():
            return path
    raise SoftHsmError("SoftHSM2 module not found; install softhsm2 (make system-deps)")


def _softhsm_util() -> str:
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise SoftHsmError("softhsm2-util not found; install softhsm2 (make system-deps)")
    return tool


def write_conf(state_dir: Path) -> Path:
    """Write ``softhsm2.conf`` with its token dir under ``state_dir``; return its path."""
    base = state_dir / "softhsm"
    tokens = base / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    conf = base / "softhsm2.conf"
    text = (
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
    return conf


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise token set-up between processes (two test runs, or tests and ``make run``)."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pins(
    base: Path, label: str, pin: str | None, so_pin: str | None, exists: bool
) -> tuple[str, str]:
    """Resolve the PINs: argument, then environment, then the stored file, else generate."""
    store = base / f"{label}.pins.json"
    stored: dict[str, str] = {}
    if store.exists():
        stored = json.loads(store.read_text())
    user = pin or os.environ.get(PIN_ENV) or stored.get("pin") or secrets.token_hex(8)
    so = so_pin or os.environ.get(SO_PIN_ENV) or stored.get("so_pin") or secrets.token_hex(8)
    if exists and stored.get("pin") not in (None, user):
        raise SoftHsmError(f"token '{label}' exists with a different PIN; remove the state dir")
    if stored != {"pin": user, "so_pin": so}:
        fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"pin": user, "so_pin": so}, handle)
    os.chmod(store, 0o600)
    return user, so


def token_labels(conf_path: Path) -> list[str]:
    """Labels of the initialised tokens of the SoftHSM instance configured by ``conf_path``."""
    env = {**os.environ, "SOFTHSM2_CONF": str(conf_path)}
    out = subprocess.run(
        [_softhsm_util(), "--show-slots"], env=env, capture_output=True, text=True, check=True
    ).stdout
    labels: list[str] = []
    initialised = False
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Initialized":
            initialised = value.strip() == "yes"
        elif key == "Label" and initialised:
            labels.append(value.strip())
    return labels


def ensure_token(
    state_dir: Path,
    label: str = DEFAULT_LABEL,
    pin: str | None = None,
    so_pin: str | None = None,
) -> TokenInfo:
    """Make sure a token ``label`` exists under ``state_dir`` and return how to use it.

    Idempotent and safe to call from several processes at once; an existing token is
    left untouched.
    """
    state_dir = state_dir.resolve()
    module = find_module()
    conf = write_conf(state_dir)
    base = conf.parent
    with _exclusive(base / ".lock"):
        exists = label in token_labels(conf)
        user_pin, so = _pins(base, label, pin, so_pin, exists)
        if not exists:
            env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
            result = subprocess.run(
                [
                    _softhsm_util(),
                    "--init-token",
                    "--free",
                    "--label",
                    label,
                    "--pin",
                    user_pin,
                    "--so-pin",
                    so,
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise SoftHsmError(f"softhsm2-util could not initialise token '{label}'")
    return TokenInfo(module_path=module, label=label, conf_path=conf, pin=user_pin, so_pin=so)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m signet.common.local.softhsm init --state-dir D``: print the conf path."""
    parser = argparse.ArgumentParser(prog="signet.common.local.softhsm")
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="initialise the token (idempotent)")
    init.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("SIGNET_STATE_DIR", ".state")),
        help="local state dir (default: $SIGNET_STATE_DIR or .state)",
    )
    init.add_argument("--label", default=DEFAULT_LABEL)
    args = parser.parse_args(argv)
    try:
        token = ensure_token(args.state_dir, label=args.label)
    except SoftHsmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(token.conf_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
