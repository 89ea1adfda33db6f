"""Webhook signatures checked against the providers' published test vectors.

Twilio: the vectors of twilio-python's RequestValidator tests
(github.com/twilio/twilio-python, tests/unit/test_request_validator.py): auth token "12345",
the URL, the parameters and the expected signatures, with and without the port.
Meta (X-Hub-Signature-256): the HMAC-SHA256 of the raw body keyed with the app secret, hex,
after "sha256=" - the scheme GitHub's webhooks use too; the vector is GitHub's documented
example ("Validating webhook deliveries": secret "It's a Secret to Everybody", payload
"Hello, World!").
"""

from __future__ import annotations

import pytest

from omnicc.channels.messaging.messenger import MessengerProvider
from omnicc.channels.messaging.meta import hub_signature
from omnicc.channels.messaging.shape import Account, BadSignature, WebhookRequest
from omnicc.channels.messaging.telegram import TelegramProvider
from omnicc.channels.messaging.twilio import TwilioProvider, twilio_signature
from omnicc.channels.messaging.whatsapp import WhatsAppProvider

TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"),
                 ("From", "+14158675309"), ("To", "+18005551212"), ("Caller", "+14158675309")]
TWILIO_EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def twilio_request(url: str, signature: str,
                   params: list[tuple[str, str]] = TWILIO_PARAMS) -> WebhookRequest:
    return WebhookRequest(method="POST", url=url, headers={"x-twilio-signature": signature},
                          query={}, body=b"", form=params)


TWILIO = Account(channel="sms", address="+18005551212", account_sid="AC1",
                 auth_token=TWILIO_TOKEN)


def test_twilio_signature_is_the_published_one() -> None:
    assert twilio_signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS) == TWILIO_EXPECTED


def test_twilio_signature_of_repeated_parameters() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_signature(TWILIO_TOKEN, TWILIO_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(("url", "signature"), [
    (TWILIO_URL, TWILIO_EXPECTED),
    (TWILIO_URL.replace(".com", ".com:1234"), TWILIO_EXPECTED),  # port removed on https
    (TWILIO_URL.replace(".com", ".com:1234").replace("https", "http"),
     "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),  # signed with the port
    (TWILIO_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # signed with :443
    (TWILIO_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # with :80
])
def test_twilio_accepts_the_published_url_forms(url: str, signature: str) -> None:
    TwilioProvider().verify(TWILIO, twilio_request(url, signature))


@pytest.mark.parametrize("change", ["signature", "param", "token", "url", "missing"])
def test_twilio_refuses_anything_changed(change: str) -> None:
    url, signature, params, account = TWILIO_URL, TWILIO_EXPECTED, TWILIO_PARAMS, TWILIO
    if change == "signature":
        signature = "RSOYDt4T1cUTdK1PDd93/VVr8B9="
    elif change == "param":
        params = [*params[:-1], ("Caller", "+14158675300")]
    elif change == "token":
        account = Account(channel="sms", address="+1", auth_token="54321")
    elif change == "url":
        url = url.replace("foo=1", "foo=2")
    else:
        signature = ""
    with pytest.raises(BadSignature):
        TwilioProvider().verify(account, twilio_request(url, signature, params))


def test_meta_signature_is_the_documented_one() -> None:
    assert hub_signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


@pytest.mark.parametrize("provider", [WhatsAppProvider(), MessengerProvider()])
def test_meta_checks_the_raw_body(provider: WhatsAppProvider | MessengerProvider) -> None:
    account = Account(channel=provider.name, address="1", app_secret="It's a Secret to Everybody")
    good = ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")

    def request(body: bytes, signature: str | None) -> WebhookRequest:
        headers = {} if signature is None else {"x-hub-signature-256": signature}
        return WebhookRequest(method="POST", url="https://x", headers=headers, query={},
                              body=body)

    provider.verify(account, request(b"Hello, World!", good))
    provider.verify(account, request(b"Hello, World!", good.upper().replace("SHA256", "sha256")))
    for body, signature in [(b"Hello, World?", good), (b"Hello, World!", None),
                            (b"Hello, World!", "sha1=0123")]:
        with pytest.raises(BadSignature):
            provider.verify(account, request(body, signature))
    with pytest.raises(BadSignature):  # no app secret: nothing can be trusted
        provider.verify(Account(channel="whatsapp", address="1"),
                        request(b"Hello, World!", good))


def test_meta_handshake() -> None:
    account = Account(channel="whatsapp", address="1", verify_token="meatyhamhock")
    query = {"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock",
             "hub.challenge": "1158201444"}
    assert WhatsAppProvider().handshake(account, query) == "1158201444"
    assert WhatsAppProvider().handshake(account, {"hub.challenge": "1"}) is None
    with pytest.raises(BadSignature):
        MessengerProvider().handshake(account, {**query, "hub.verify_token": "other"})


def test_telegram_secret_token() -> None:
    account = Account(channel="telegram", address="bot", app_secret="s3cr3t_-A")

    def request(token: str | None) -> WebhookRequest:
        headers = {} if token is None else {"x-telegram-bot-api-secret-token": token}
        return WebhookRequest(method="POST", url="https://x", headers=headers, query={},
                              body=b"{}")

    TelegramProvider().verify(account, request("s3cr3t_-A"))
    for token in ("s3cr3t_-B", "", None):
        with pytest.raises(BadSignature):
            TelegramProvider().verify(account, request(token))
