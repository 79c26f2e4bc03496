"""Templates: both languages, tenant overrides and their checks."""

from __future__ import annotations

import pytest

from signet.common.errors import InvalidArgument
from signet.notify.domain import ChannelKind
from signet.notify.templates import (
    BUILTIN,
    LOCALES,
    TemplateCatalog,
    _identifiers,
    normalise_locale,
    parse_overrides,
)


def test_every_template_has_both_languages_with_the_same_parameters() -> None:
    for template in BUILTIN.values():
        assert set(template.texts) == set(LOCALES), template.template_id
        zh, en = template.texts["zh-CN"], template.texts["en"]
        names = [_identifiers(t.subject + t.body + t.sms) for t in (zh, en)]
        assert names[0] == names[1], template.template_id


def test_render_in_chinese_and_english() -> None:
    catalog = TemplateCatalog(sms_signature="【Signet】")
    params = {"code": "123456", "minutes": "5"}
    zh = catalog.render("willingness-code", "zh-Hans-CN", params, channel=ChannelKind.SMS)
    en = catalog.render("willingness-code", "en-GB", params, channel=ChannelKind.SMS)
    assert zh.locale == "zh-CN" and zh.sms.startswith("【Signet】") and "123456" in zh.sms
    assert en.locale == "en" and en.sms.startswith("Your signing code is 123456")


def test_unknown_locale_falls_back_to_the_default() -> None:
    assert TemplateCatalog(default_locale="en").render("account-cancelled", "fr", {}).locale == "en"
    assert normalise_locale("fr") == ""


def test_missing_parameter_is_invalid_argument_naming_it() -> None:
    with pytest.raises(InvalidArgument, match="'minutes'"):
        TemplateCatalog().render("willingness-code", "en", {"code": "1"})
    with pytest.raises(InvalidArgument, match="minutes"):
        TemplateCatalog().check_params("willingness-code", {"code": "1"})


def test_tenant_override_replaces_only_that_tenant_and_part() -> None:
    overrides = parse_overrides(
        {"acme": {"certificate-issued": {"en": {"subject": "ACME certificate ${serial}"}}}}
    )
    catalog = TemplateCatalog(overrides)
    params = {"serial": "01", "not_after": "2030"}
    acme = catalog.render("certificate-issued", "en", params, tenant="acme")
    other = catalog.render("certificate-issued", "en", params, tenant="other")
    assert acme.subject == "ACME certificate 01"
    assert acme.body == other.body
    assert other.subject == "Your certificate was issued"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"acme": {"nope": {}}}, "unknown template"),
        ({"acme": {"certificate-issued": {"fr": {}}}}, "unknown locale"),
        ({"acme": {"certificate-issued": {"en": {"footer": "x"}}}}, "only subject, body, sms"),
        ({"acme": {"certificate-issued": {"en": {"body": "${password}"}}}}, "unknown parameters"),
        ([], "JSON object"),
    ],
)
def test_bad_overrides_are_refused_at_load(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_overrides(raw)


def test_coded_values_are_put_into_each_languages_words() -> None:
    catalog = TemplateCatalog()
    zh = catalog.render("contact-changed", "zh-CN", {"fields": "phone,email,nickname"})
    en = catalog.render("contact-changed", "en", {"fields": "phone,email,nickname"})
    assert "手机号、邮箱、nickname" in zh.body
    assert "phone number, e-mail address, nickname" in en.body
    params = {"serial": "01", "revoked_at": "-", "reason": "platform_key_loss"}
    assert "密钥或激活数据丢失" in catalog.render("certificate-revoked", "zh-CN", params).body
    assert "key or activation data lost" in catalog.render("certificate-revoked", "en", params).body
