# ruff: noqa: RUF001  (Chinese texts use full-width punctuation on purpose)
"""Message templates in Chinese and English, overridable per tenant.

Each template has an e-mail subject and body and a short SMS text per locale, with
``${name}`` placeholders filled from the notification's parameters. A tenant may replace
any part of any template for any locale in a JSON overrides file::

    {"tenant-1": {"certificate-issued": {"en": {"subject": "...", "body": "...", "sms": "..."}}}}

Overrides are checked when loaded: unknown templates or locales, unknown parts and
placeholders the built-in template does not offer are refused at start-up, not at send time.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from signet.common.errors import InvalidArgument
from signet.notify.domain import Category, ChannelKind

LOCALES = ("zh-CN", "en")
_PARTS = ("subject", "body", "sms")


@dataclass(frozen=True)
class Text:
    """One locale of a template."""

    subject: str
    body: str
    sms: str


@dataclass(frozen=True)
class Template:
    """A message kind: its category, default channels and texts by locale."""

    template_id: str
    category: Category
    texts: Mapping[str, Text]

    def placeholders(self) -> frozenset[str]:
        """Every parameter name any locale of the built-in template uses."""
        names: set[str] = set()
        for text in self.texts.values():
            for part in (text.subject, text.body, text.sms):
                names.update(_identifiers(part))
        return frozenset(names)


@dataclass(frozen=True)
class Rendered:
    """A filled-in template in one locale."""

    subject: str
    body: str
    sms: str
    locale: str


def _identifiers(text: str) -> set[str]:
    found: set[str] = set()
    for _, named, braced, _ in string.Template.pattern.findall(text):
        if named or braced:
            found.add(named or braced)
    return found


def _t(template_id: str, category: Category, zh: Text, en: Text) -> Template:
    return Template(template_id, category, {"zh-CN": zh, "en": en})


_BUILTIN: tuple[Template, ...] = (
    _t(
        "willingness-code",
        Category.ONE_TIME_CODE,
        Text(
            "签署验证码",
            "您的签署验证码为 ${code}，${minutes} 分钟内有效。请勿告诉他人。",
            "您的签署验证码为${code}，${minutes}分钟内有效，请勿泄露。",
        ),
        Text(
            "Your signing code",
            "Your signing code is ${code}. It is valid for ${minutes} minutes. "
            "Do not share it with anyone.",
            "Your signing code is ${code}, valid for ${minutes} min. Do not share it.",
        ),
    ),
    _t(
        "verification-code",
        Category.ONE_TIME_CODE,
        Text(
            "身份验证码",
            "您的验证码为 ${code}，${minutes} 分钟内有效。请勿告诉他人。",
            "您的验证码为${code}，${minutes}分钟内有效，请勿泄露。",
        ),
        Text(
            "Your verification code",
            "Your verification code is ${code}. It is valid for ${minutes} minutes.",
            "Your verification code is ${code}, valid for ${minutes} min.",
        ),
    ),
    _t(
        "signing-invitation",
        Category.SIGNING_INVITATION,
        Text(
            "签署邀请：${document_title}",
            "${sender_name} 邀请您签署《${document_title}》。请在 ${due_date} 前完成签署。",
            "${sender_name}邀请您签署《${document_title}》，请在${due_date}前完成。",
        ),
        Text(
            "Please sign: ${document_title}",
            '${sender_name} invites you to sign "${document_title}" by ${due_date}.',
            '${sender_name} invites you to sign "${document_title}" by ${due_date}.',
        ),
    ),
    _t(
        "signing-reminder",
        Category.REMINDER,
        Text(
            "签署提醒：${document_title}",
            "《${document_title}》仍在等待您的签署，截止时间 ${due_date}。",
            "《${document_title}》待您签署，截止${due_date}。",
        ),
        Text(
            "Reminder: ${document_title} awaits your signature",
            '"${document_title}" still awaits your signature; it is due by ${due_date}.',
            'Reminder: "${document_title}" awaits your signature by ${due_date}.',
        ),
    ),
    _t(
        "contract-completed",
        Category.CONTRACT_COMPLETED,
        Text(
            "签署完成",
            "您的证书（序列号 ${certificate_serial}）于 ${signed_at} 完成了一次签署，"
            "签署记录编号 ${signature_id}。如非本人操作，请立即联系我们。",
            "您的证书于${signed_at}完成一次签署（${signature_id}）。如非本人操作请联系我们。",
        ),
        Text(
            "A document was signed",
            "Your certificate (serial ${certificate_serial}) made a signature at ${signed_at}, "
            "record ${signature_id}. If this was not you, contact us at once.",
            "Your certificate signed at ${signed_at} (${signature_id}). Not you? Contact us.",
        ),
    ),
    _t(
        "certificate-issued",
        Category.CERTIFICATE_NOTICE,
        Text(
            "数字证书已签发",
            "您的数字证书已签发，序列号 ${serial}，有效期至 ${not_after}。",
            "您的数字证书已签发（序列号${serial}），有效期至${not_after}。",
        ),
        Text(
            "Your certificate was issued",
            "Your digital certificate was issued: serial ${serial}, valid until ${not_after}.",
            "Your certificate ${serial} was issued, valid until ${not_after}.",
        ),
    ),
    _t(
        "certificate-renewed",
        Category.CERTIFICATE_NOTICE,
        Text(
            "数字证书已更新",
            "您的数字证书已更新，新序列号 ${serial}（原 ${previous_serial}），"
            "有效期至 ${not_after}。",
            "您的数字证书已更新（${serial}），有效期至${not_after}。",
        ),
        Text(
            "Your certificate was renewed",
            "Your digital certificate was renewed: serial ${serial} (was ${previous_serial}), "
            "valid until ${not_after}.",
            "Your certificate was renewed as ${serial}, valid until ${not_after}.",
        ),
    ),
    _t(
        "certificate-revoked",
        Category.SECURITY_NOTICE,
        Text(
            "数字证书已吊销",
            "您的数字证书（序列号 ${serial}）已于 ${revoked_at} 吊销，原因：${reason}。"
            "吊销后该证书不能再用于签署。如非您本人申请，请立即联系我们。",
            "您的数字证书${serial}已于${revoked_at}吊销（${reason}）。如非本人申请请联系我们。",
        ),
        Text(
            "Your certificate was revoked",
            "Your digital certificate (serial ${serial}) was revoked at ${revoked_at}, "
            "reason: ${reason}. It can no longer sign. If you did not ask for this, "
            "contact us at once.",
            "Your certificate ${serial} was revoked at ${revoked_at} (${reason}).",
        ),
    ),
    _t(
        "certificate-expiring",
        Category.REMINDER,
        Text(
            "数字证书即将到期",
            "您的数字证书（序列号 ${serial}）将于 ${not_after} 到期，请及时更新。",
            "您的数字证书${serial}将于${not_after}到期，请及时更新。",
        ),
        Text(
            "Your certificate expires soon",
            "Your digital certificate (serial ${serial}) expires at ${not_after}. "
            "Please renew it in time.",
            "Your certificate ${serial} expires at ${not_after}. Please renew it.",
        ),
    ),
    _t(
        "certificate-expiring-auto-renewal",
        Category.REMINDER,
        Text(
            "数字证书即将到期",
            "您的数字证书（序列号 ${serial}）将于 ${not_after} 到期，系统将按您的授权自动更新。",
            "您的数字证书${serial}将于${not_after}到期，将自动更新。",
        ),
        Text(
            "Your certificate expires soon",
            "Your digital certificate (serial ${serial}) expires at ${not_after}; it will be "
            "renewed automatically, as you authorised.",
            "Your certificate ${serial} expires at ${not_after}; it renews automatically.",
        ),
    ),
    _t(
        "real-name-verified",
        Category.SECURITY_NOTICE,
        Text(
            "实名认证成功",
            "您的账户已于 ${verified_at} 通过实名认证。如非本人操作，请立即联系我们。",
            "您的账户已于${verified_at}通过实名认证。如非本人操作请联系我们。",
        ),
        Text(
            "Real-name verification succeeded",
            "Your account passed real-name verification at ${verified_at}. If this was not "
            "you, contact us at once.",
            "Your account passed real-name verification at ${verified_at}.",
        ),
    ),
    _t(
        "real-name-locked",
        Category.SECURITY_NOTICE,
        Text(
            "实名认证已锁定",
            "您的账户因多次实名认证失败已被锁定。如非本人操作，请立即联系我们。",
            "您的账户因多次实名认证失败已锁定。如非本人操作请联系我们。",
        ),
        Text(
            "Real-name verification locked",
            "After repeated failures, real-name verification on your account is locked. If "
            "this was not you, contact us at once.",
            "Real-name verification on your account is locked after repeated failures.",
        ),
    ),
    _t(
        "willingness-locked",
        Category.SECURITY_NOTICE,
        Text(
            "签署意愿验证已锁定",
            "您的账户因多次签署意愿验证失败已被锁定。如非本人操作，请立即联系我们。",
            "您的账户因多次签署验证失败已锁定。如非本人操作请联系我们。",
        ),
        Text(
            "Signing confirmation locked",
            "After repeated failures, signing confirmation on your account is locked. If "
            "this was not you, contact us at once.",
            "Signing confirmation on your account is locked after repeated failures.",
        ),
    ),
    _t(
        "contact-changed",
        Category.SECURITY_NOTICE,
        Text(
            "账户信息已变更",
            "您的账户信息已变更：${fields}。如非本人操作，请立即联系我们。",
            "您的账户信息已变更（${fields}）。如非本人操作请联系我们。",
        ),
        Text(
            "Your account details changed",
            "These details of your account changed: ${fields}. If this was not you, "
            "contact us at once.",
            "Your account details changed (${fields}). Not you? Contact us.",
        ),
    ),
    _t(
        "auto-sign-authorized",
        Category.SECURITY_NOTICE,
        Text(
            "已开通自动签署",
            "您已授权自动签署，范围：${scope}，有效期至 ${valid_until}。您可随时撤销授权。",
            "您已授权自动签署（${scope}），有效期至${valid_until}。",
        ),
        Text(
            "Automatic signing authorised",
            "You authorised automatic signing for ${scope} until ${valid_until}. You can "
            "revoke it at any time.",
            "You authorised automatic signing (${scope}) until ${valid_until}.",
        ),
    ),
    _t(
        "auto-sign-revoked",
        Category.SECURITY_NOTICE,
        Text(
            "自动签署授权已撤销",
            "您的自动签署授权（编号 ${authorization_id}）已撤销。",
            "您的自动签署授权${authorization_id}已撤销。",
        ),
        Text(
            "Automatic signing revoked",
            "Your automatic-signing authorisation ${authorization_id} was revoked.",
            "Your automatic-signing authorisation ${authorization_id} was revoked.",
        ),
    ),
    _t(
        "operator-authorized",
        Category.SECURITY_NOTICE,
        Text(
            "企业经办人授权",
            "您已被授权代表企业账户 ${enterprise_account_id} 办理业务，有效期至 ${valid_until}。",
            "您已被授权代表企业${enterprise_account_id}办理业务，至${valid_until}。",
        ),
        Text(
            "You may act for an enterprise",
            "You were authorised to act for enterprise account ${enterprise_account_id} "
            "until ${valid_until}.",
            "You may act for enterprise ${enterprise_account_id} until ${valid_until}.",
        ),
    ),
    _t(
        "account-cancellation-requested",
        Category.SECURITY_NOTICE,
        Text(
            "注销申请已受理",
            "您的账户注销申请已受理，将在 ${due_by} 前完成。与签署相关的数据依法保存至少 5 年。",
            "您的注销申请已受理，将于${due_by}前完成。",
        ),
        Text(
            "Account cancellation requested",
            "Your request to cancel your account was received and completes by ${due_by}. "
            "Signing-related data is kept for at least 5 years, as the law requires.",
            "Your account cancellation completes by ${due_by}.",
        ),
    ),
    _t(
        "account-cancelled",
        Category.SECURITY_NOTICE,
        Text(
            "账户已注销",
            "您的账户已注销。与签署相关的数据依法保存至少 5 年。",
            "您的账户已注销。",
        ),
        Text(
            "Your account was cancelled",
            "Your account was cancelled. Signing-related data is kept for at least 5 years, "
            "as the law requires.",
            "Your account was cancelled.",
        ),
    ),
    _t(
        "deletion-completed",
        Category.SECURITY_NOTICE,
        Text(
            "个人信息删除已完成",
            "您的个人信息删除请求（编号 ${request_id}）已处理完成。",
            "您的个人信息删除请求${request_id}已完成。",
        ),
        Text(
            "Your deletion request was carried out",
            "Your request ${request_id} to delete personal data was carried out.",
            "Your deletion request ${request_id} was carried out.",
        ),
    ),
    _t(
        "incident-notice",
        Category.INCIDENT_NOTICE,
        Text(
            "个人信息安全事件告知：${title}",
            "事件经过及可能影响：${what_happened_and_impact}\n\n"
            "我们已采取的措施：${measures_taken}\n\n"
            "您可以采取的防范措施：${advice}\n\n"
            "补救措施：${remedies}",
            "个人信息安全事件告知：${title}。详情已发送至您的邮箱，请留意查收。",
        ),
        Text(
            "Personal data incident: ${title}",
            "What happened and its possible impact: ${what_happened_and_impact}\n\n"
            "What we have done: ${measures_taken}\n\n"
            "What you can do: ${advice}\n\n"
            "Remedies: ${remedies}",
            "Personal data incident: ${title}. Details were sent to your e-mail.",
        ),
    ),
)

BUILTIN: Mapping[str, Template] = {t.template_id: t for t in _BUILTIN}
"""The built-in templates by id."""

_REASONS: Mapping[str, tuple[str, str]] = {
    "unspecified": ("未说明", "unspecified"),
    "key_compromise": ("密钥泄露", "key compromise"),
    "ca_compromise": ("CA 密钥泄露", "CA compromise"),
    "affiliation_changed": ("信息变更", "affiliation changed"),
    "superseded": ("已被新证书替代", "superseded"),
    "cessation_of_operation": ("停止使用", "cessation of operation"),
    "certificate_hold": ("证书暂停", "certificate hold"),
    "remove_from_crl": ("解除暂停", "removed from hold"),
    "privilege_withdrawn": ("权限撤销", "privilege withdrawn"),
    "aa_compromise": ("属性机构密钥泄露", "AA compromise"),
    "platform_false_data": ("提供虚假资料", "false data provided"),
    "platform_changed_data": ("认证信息已变更", "certified data changed"),
    "platform_key_loss": ("密钥或激活数据丢失", "key or activation data lost"),
    "platform_misuse": ("违反协议使用", "use against the agreement"),
    "platform_subject_expired": ("主体已终止", "subject ceased to exist"),
    "platform_illegal_use": ("用于违法活动", "illegal use"),
}
_FIELDS: Mapping[str, tuple[str, str]] = {
    "phone": ("手机号", "phone number"),
    "email": ("邮箱", "e-mail address"),
    "name": ("姓名", "name"),
    "display_name": ("名称", "display name"),
    "id_number": ("证件号码", "ID number"),
    "bank_card": ("银行卡", "bank card"),
    "address": ("地址", "address"),
    "legal_representative": ("法定代表人", "legal representative"),
}
_VOCABULARY: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "reason": _REASONS,
    "fields": _FIELDS,
}
"""Parameters whose values are codes put into words per locale (zh-CN, en)."""


def _localise(params: Mapping[str, str], locale: str) -> dict[str, str]:
    """``params`` with coded values (revocation reasons, field names) in ``locale``'s words.

    Unknown codes stay as they are, with underscores as spaces.
    """
    index = 0 if locale == "zh-CN" else 1
    result = dict(params)
    for name, words in _VOCABULARY.items():
        if name not in params:
            continue
        codes = [c.strip() for c in params[name].split(",") if c.strip()]
        said = [words[c][index] if c in words else c.replace("_", " ") for c in codes]
        result[name] = ("、" if index == 0 else ", ").join(said)
    return result


def normalise_locale(locale: str) -> str:
    """``zh-CN`` or ``en`` for a BCP 47 tag (``zh``, ``zh-Hans-CN``, ``en-GB``); "" otherwise."""
    tag = locale.strip().lower().replace("_", "-")
    if tag.startswith("zh"):
        return "zh-CN"
    if tag.startswith("en"):
        return "en"
    return ""


class TemplateCatalog:
    """The built-in templates plus per-tenant overrides."""

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, Mapping[str, Text]]] | None = None,
        *,
        default_locale: str = "zh-CN",
        sms_signature: str = "",
    ) -> None:
        self._overrides = overrides or {}
        self.default_locale = default_locale
        self._sms_signature = sms_signature

    @classmethod
    def from_file(
        cls, path: str, *, default_locale: str = "zh-CN", sms_signature: str = ""
    ) -> TemplateCatalog:
        """Load and check overrides from a JSON file; ValueError naming what is wrong."""
        raw = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
        return cls(parse_overrides(raw), default_locale=default_locale, sms_signature=sms_signature)

    def get(self, template_id: str) -> Template:
        """A built-in template; InvalidArgument when there is none of that id."""
        template = BUILTIN.get(template_id)
        if template is None:
            raise InvalidArgument(f"unknown template_id {template_id!r}")
        return template

    def render(
        self,
        template_id: str,
        locale: str,
        params: Mapping[str, str],
        *,
        tenant: str = "",
        channel: ChannelKind = ChannelKind.EMAIL,
    ) -> Rendered:
        """Fill in the template for ``tenant`` in ``locale`` (else the default locale).

        InvalidArgument names the first parameter the template needs and did not get.
        """
        template = self.get(template_id)
        chosen = normalise_locale(locale) or self.default_locale
        text = template.texts[chosen]
        override = self._overrides.get(tenant, {}).get(template_id, {}).get(chosen)
        if override is not None:
            text = override
        values = _localise(params, chosen)
        try:
            rendered = Rendered(
                subject=string.Template(text.subject).substitute(values),
                body=string.Template(text.body).substitute(values),
                sms=string.Template(text.sms).substitute(values),
                locale=chosen,
            )
        except KeyError as err:
            raise InvalidArgument(
                f"template {template_id!r} needs the parameter {err.args[0]!r}"
            ) from None
        if channel is ChannelKind.SMS and self._sms_signature and chosen == "zh-CN":
            rendered = replace(rendered, sms=self._sms_signature + rendered.sms)
        return rendered

    def check_params(self, template_id: str, params: Mapping[str, str]) -> None:
        """InvalidArgument when ``params`` lacks a placeholder the template uses."""
        missing = sorted(self.get(template_id).placeholders() - set(params))
        if missing:
            raise InvalidArgument(
                f"template {template_id!r} needs the parameters: {', '.join(missing)}"
            )


def parse_overrides(raw: object) -> dict[str, dict[str, dict[str, Text]]]:
    """Checked overrides from parsed JSON; ValueError naming the first problem."""
    if not isinstance(raw, dict):
        raise ValueError("template overrides must be a JSON object of tenants")
    result: dict[str, dict[str, dict[str, Text]]] = {}
    for tenant, templates in raw.items():
        if not isinstance(templates, dict):
            raise ValueError(f"overrides of tenant {tenant!r} must be an object")
        for template_id, locales in templates.items():
            builtin = BUILTIN.get(template_id)
            if builtin is None:
                raise ValueError(f"tenant {tenant!r} overrides unknown template {template_id!r}")
            if not isinstance(locales, dict):
                raise ValueError(f"override {tenant}/{template_id} must be an object of locales")
            allowed = builtin.placeholders()
            for locale, parts in locales.items():
                if locale not in LOCALES:
                    raise ValueError(f"override {tenant}/{template_id}: unknown locale {locale!r}")
                if not isinstance(parts, dict) or set(parts) - set(_PARTS):
                    raise ValueError(
                        f"override {tenant}/{template_id}/{locale} may set only subject, body, sms"
                    )
                base = builtin.texts[locale]
                values = {p: str(parts.get(p, getattr(base, p))) for p in _PARTS}
                for part, value in values.items():
                    unknown = _identifiers(value) - allowed
                    if unknown:
                        raise ValueError(
                            f"override {tenant}/{template_id}/{locale}/{part} uses unknown "
                            f"parameters: {', '.join(sorted(unknown))}"
                        )
                result.setdefault(tenant, {}).setdefault(template_id, {})[locale] = Text(**values)
    return result
