"""Identity's one-time code requests fit notify's templates (the parameters they need).

The code sender's request, as the notify double recorded it, must render with notify's
real template catalogue: a missing parameter is refused by notify and no code arrives.
"""

from __future__ import annotations

from signet.common.v1 import common_pb2
from signet.identity.v1 import identity_pb2
from signet.notify.domain import ChannelKind
from signet.notify.templates import TemplateCatalog
from tests.fixtures.identity import IdentityEnv, make_id_number


def test_verification_and_willingness_codes_render_with_notify_templates(
    env: IdentityEnv,
) -> None:
    tenant = env.tenant()
    account = env.verified_person(tenant, phone="13912345678", id_number=make_id_number())
    verification = env.notify.requests[-1]
    started = env.stub.StartWillingness(
        identity_pb2.StartWillingnessRequest(
            account_id=account.account_id,
            key_id="k-1",
            digests=[
                common_pb2.Digest(algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=b"\x01" * 32)
            ],
            method=identity_pb2.WILLINGNESS_METHOD_SMS_CODE,
        )
    )
    assert started.willingness_id
    willingness = env.notify.requests[-1]
    catalog = TemplateCatalog()
    for request in (verification, willingness):
        assert request.template_id in ("verification-code", "willingness-code")
        catalog.check_params(request.template_id, dict(request.params))
        text = catalog.render(
            request.template_id, "en", dict(request.params), channel=ChannelKind.SMS
        ).sms
        assert request.params["code"] in text
        assert 1 <= int(request.params["minutes"]) <= 5
