"""Webhook bodies as the providers document them, parsed into messages and receipts; the
malformed ones refused with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from omnicc.channels.messaging.messenger import MessengerProvider
from omnicc.channels.messaging.shape import Account, BadPayload, Media, WebhookRequest
from omnicc.channels.messaging.telegram import TelegramProvider
from omnicc.channels.messaging.twilio import TwilioProvider
from omnicc.channels.messaging.whatsapp import WhatsAppProvider

ACCOUNT = Account(channel="whatsapp", address="106540352242922")


def json_request(body: Any) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(method="POST", url="https://x", headers={}, query={}, body=raw)


def form_request(form: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(method="POST", url="https://x", headers={}, query={}, body=b"",
                          form=list(form.items()))


def whatsapp_hook(value: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{
        "id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881",
                         "phone_number_id": "106540352242922"}, **value}}]}]}


def test_whatsapp_text_image_and_status() -> None:
    parsed = WhatsAppProvider().parse(ACCOUNT, json_request(whatsapp_hook({
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": [
            {"from": "16505551234", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTA=",
             "timestamp": "1749416383", "type": "text",
             "text": {"body": "Does it come in another color?"}},
            {"from": "16505551234", "id": "wamid.IMG", "timestamp": "1749416384",
             "type": "image", "image": {"caption": "this one", "mime_type": "image/jpeg",
                                        "sha256": "x", "id": "1003383421387256"}}],
        "statuses": [{"id": "wamid.OUT", "status": "delivered", "timestamp": "1749416385",
                      "recipient_id": "16505551234"},
                     {"id": "wamid.BAD", "status": "failed", "timestamp": "1749416386",
                      "recipient_id": "16505551234",
                      "errors": [{"code": 131047, "title": "Re-engagement message"}]}]})))
    first, second = parsed.messages
    assert (first.peer, first.name, first.text) == ("+16505551234", "Sheena Nelson",
                                                    "Does it come in another color?")
    assert second.text == "this one"
    assert second.media == (Media("https://graph.facebook.com/v21.0/1003383421387256",
                                  "image/jpeg"),)
    assert [(r.provider_message_id, r.state) for r in parsed.receipts] == [
        ("wamid.OUT", "delivered"), ("wamid.BAD", "failed")]
    assert "131047" in parsed.receipts[1].error


@pytest.mark.parametrize("body", [b"not json", b"[1]", {"object": "page"},
                                  {"object": "whatsapp_business_account"},
                                  whatsapp_hook({"messages": [{"from": "1", "type": "text"}]})])
def test_whatsapp_malformed(body: Any) -> None:
    with pytest.raises(BadPayload):
        WhatsAppProvider().parse(ACCOUNT, json_request(body))


def test_messenger_message_delivery_read_and_echo() -> None:
    parsed = MessengerProvider().parse(ACCOUNT, json_request({"object": "page", "entry": [{
        "id": "PAGE", "time": 1458692752478, "messaging": [
            {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 1458692752478,
             "message": {"mid": "m_1", "text": "hello, world!", "attachments": [
                 {"type": "image", "payload": {"url": "https://cdn.example/p.jpg"}}]}},
            {"sender": {"id": "PAGE"}, "recipient": {"id": "PSID1"},
             "message": {"mid": "m_echo", "is_echo": True, "text": "ours"}},
            {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"},
             "delivery": {"mids": ["m_out"], "watermark": 1458668856253}},
            {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"},
             "read": {"watermark": 1458668856253}}]}]}))
    (message,) = parsed.messages
    assert (message.peer, message.text, message.media[0].url) == (
        "PSID1", "hello, world!", "https://cdn.example/p.jpg")
    delivered, read = parsed.receipts
    assert (delivered.provider_message_id, delivered.state) == ("m_out", "delivered")
    assert (read.state, read.peer) == ("read", "PSID1")
    assert read.read_up_to == datetime.fromtimestamp(1458668856.253, UTC)


def test_telegram_update() -> None:
    parsed = TelegramProvider().parse(ACCOUNT, json_request({"update_id": 10000, "message": {
        "message_id": 1365, "date": 1441645532,
        "from": {"id": 1111111, "is_bot": False, "first_name": "Test", "last_name": "Lastname",
                 "username": "Test"},
        "chat": {"id": 1111111, "type": "private", "first_name": "Test"},
        "caption": "look", "photo": [{"file_id": "small", "file_unique_id": "a", "width": 90,
                                      "height": 90},
                                     {"file_id": "large", "file_unique_id": "b", "width": 800,
                                      "height": 800}]}}))
    (message,) = parsed.messages
    assert (message.provider_message_id, message.peer, message.name, message.text) == (
        "1111111:1365", "1111111", "Test Lastname", "look")
    assert message.media == (Media("telegram-file:large", "image/jpeg"),)
    assert TelegramProvider().parse(ACCOUNT, json_request(
        {"update_id": 1, "edited_message": {}})).messages == []
    with pytest.raises(BadPayload):
        TelegramProvider().parse(ACCOUNT, json_request({"message": {}}))
    with pytest.raises(BadPayload):
        TelegramProvider().parse(ACCOUNT, json_request({"update_id": 2, "message": {}}))


def test_twilio_whatsapp_media_and_status_callback() -> None:
    parsed = TwilioProvider().parse(ACCOUNT, form_request({
        "MessageSid": "MM1", "SmsStatus": "received", "From": "whatsapp:+14155238886",
        "To": "whatsapp:+15005550006", "Body": "photo", "NumMedia": "1", "ProfileName": "Ana",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        "MediaContentType0": "image/jpeg"}))
    (message,) = parsed.messages
    assert (message.peer, message.name, message.media[0].content_type) == (
        "+14155238886", "Ana", "image/jpeg")
    status = TwilioProvider().parse(ACCOUNT, form_request({
        "MessageSid": "SM2", "MessageStatus": "undelivered", "ErrorCode": "30003"}))
    assert [(r.provider_message_id, r.state, r.error) for r in status.receipts] == [
        ("SM2", "failed", "Twilio error 30003")]
    assert TwilioProvider().parse(ACCOUNT, form_request(
        {"MessageSid": "SM2", "MessageStatus": "queued"})).receipts == []
    for form in ({"From": "+1"}, {"MessageSid": "SM3"},
                 {"MessageSid": "SM3", "MessageStatus": "exploded"},
                 {"MessageSid": "SM3", "From": "+1", "NumMedia": "x"}):
        with pytest.raises(BadPayload):
            TwilioProvider().parse(ACCOUNT, form_request(form))
