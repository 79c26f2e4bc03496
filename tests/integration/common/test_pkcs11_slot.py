"""The PKCS#11 pool finds its token by label and, when told, in a given slot (real SoftHSM)."""

from __future__ import annotations

import pytest

from signet.common.errors import Unavailable
from signet.common.local.softhsm import TokenInfo
from signet.common.pkcs11 import Pkcs11Pool, load_module

pytestmark = pytest.mark.softhsm


def _slot_of(token: TokenInfo) -> int:
    lib = load_module(str(token.module_path)).lib
    for slot in lib.get_slots(token_present=True):
        if slot.get_token().label == token.label:
            return int(slot.slot_id)
    raise AssertionError("the test token has no slot")


def test_pool_opens_the_token_in_the_named_slot(softhsm_token: TokenInfo) -> None:
    pool = Pkcs11Pool(
        str(softhsm_token.module_path),
        softhsm_token.label,
        softhsm_token.pin,
        1,
        slot_id=_slot_of(softhsm_token),
    )
    try:
        with pool.session() as session:
            assert session.token.label == softhsm_token.label
    finally:
        pool.close()


def test_a_slot_without_that_token_is_unavailable(softhsm_token: TokenInfo) -> None:
    wrong = _slot_of(softhsm_token) + 1
    with pytest.raises(Unavailable, match="HSM unavailable"):
        Pkcs11Pool(
            str(softhsm_token.module_path), softhsm_token.label, softhsm_token.pin, 1, slot_id=wrong
        )
