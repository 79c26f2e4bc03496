"""Issue 2 acceptance on real SoftHSM: concurrent signing without a crash, keys unreadable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from signet.common.errors import Unavailable
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme
from signet.common.local.softhsm import TokenInfo
from signet.common.pkcs11 import Pkcs11KeyBackend, Pkcs11Pool

pytestmark = pytest.mark.softhsm

STRESS = Path(__file__).with_name("pkcs11_stress.py")


def _run_stress(token: TokenInfo, tmp_path: Path, threads: int, total: int) -> dict[str, object]:
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin)
    pin_file.chmod(0o600)
    env = {**os.environ, **token.env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [
            sys.executable,
            str(STRESS),
            "--module",
            str(token.module_path),
            "--label",
            token.label,
            "--pin-file",
            str(pin_file),
            "--threads",
            str(threads),
            "--total",
            str(total),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, (
        f"signing process died with status {proc.returncode} "
        f"({'SIGSEGV' if proc.returncode == -11 else 'error'}): {proc.stderr[-2000:]}"
    )
    report: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.slow
def test_pool_signs_20000_p256_digests_from_8_threads_without_crash(
    softhsm_token: TokenInfo, tmp_path: Path
) -> None:
    report = _run_stress(softhsm_token, tmp_path, threads=8, total=20_000)
    assert report["errors"] == []
    assert report["signed"] == 20_000
    assert report["verified"] == 20_000
    assert report["os_locking"] is True
    assert isinstance(report["peak_in_flight"], int)
    assert report["peak_in_flight"] > 1


def test_private_key_value_cannot_be_read(
    softhsm_token: TokenInfo, pkcs11_pool: Pkcs11Pool
) -> None:
    backend = Pkcs11KeyBackend(pkcs11_pool)
    key_id = f"sealed-{uuid.uuid4().hex[:12]}"
    backend.generate(key_id, KeyAlgorithm.EC_P256)
    try:
        with pkcs11_pool.session() as session:
            (private,) = session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: key_id.encode()}
            )
            with pytest.raises(p11e.AttributeSensitive):
                private[Attribute.VALUE]
            flags = private.get_attributes(
                [
                    Attribute.TOKEN,
                    Attribute.PRIVATE,
                    Attribute.SENSITIVE,
                    Attribute.EXTRACTABLE,
                    Attribute.ALWAYS_SENSITIVE,
                    Attribute.NEVER_EXTRACTABLE,
                    Attribute.SIGN,
                    Attribute.DECRYPT,
                    Attribute.UNWRAP,
                    Attribute.DERIVE,
                ]
            )
        assert flags == {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ALWAYS_SENSITIVE: True,
            Attribute.NEVER_EXTRACTABLE: True,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }

        def read_object(kind: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [
                    "pkcs11-tool",
                    "--module",
                    str(softhsm_token.module_path),
                    "--token-label",
                    softhsm_token.label,
                    "--login",
                    "--pin",
                    softhsm_token.pin,
                    "--read-object",
                    "--type",
                    kind,
                    "--id",
                    key_id.encode().hex(),
                ],
                env={**os.environ, **softhsm_token.env},
                capture_output=True,
                timeout=60,
                check=False,
            )

        # The same command reads the public half, so the command itself is right.
        public = read_object("pubkey")
        assert public.returncode == 0
        assert public.stdout
        # No private key bytes come out (pkcs11-tool declines before asking the token, so
        # the token's own refusal is the AttributeSensitive above).
        private_read = read_object("privkey")
        assert not private_read.stdout
        listing = subprocess.run(
            [
                "pkcs11-tool",
                "--module",
                str(softhsm_token.module_path),
                "--token-label",
                softhsm_token.label,
                "--login",
                "--pin",
                softhsm_token.pin,
                "--list-objects",
                "--type",
                "privkey",
                "--id",
                key_id.encode().hex(),
            ],
            env={**os.environ, **softhsm_token.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "never extractable" in listing
        assert "always sensitive" in listing
    finally:
        backend.destroy(key_id)


# Closing the session under a running search makes python-pkcs11 complain from __del__.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_broken_session_is_replaced_and_pool_keeps_working(pkcs11_pool: Pkcs11Pool) -> None:
    def use_after_close() -> None:
        with pkcs11_pool.session() as session:
            session.close()
            list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))

    with pytest.raises(Unavailable):
        use_after_close()
    for _ in range(pkcs11_pool.size + 1):
        with pkcs11_pool.session() as session:
            list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}))


def test_lost_login_is_restored_and_signing_retried(
    softhsm_token: TokenInfo, pkcs11_pool: Pkcs11Pool
) -> None:
    backend = Pkcs11KeyBackend(pkcs11_pool)
    key_id = f"relogin-{uuid.uuid4().hex[:12]}"
    backend.generate(key_id, KeyAlgorithm.EC_P256)
    try:
        # Closing the anchor session logs the whole token out (login is per token), as a
        # token reset or an expired HSM login would; the pool must log in again by itself.
        pkcs11_pool._login.close()
        signature = backend.sign(key_id, SignatureScheme.ECDSA, HashAlgorithm.SHA256, bytes(32))
        assert signature
    finally:
        backend.destroy(key_id)
