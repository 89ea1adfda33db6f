"""Reading the corpus of real-world-shaped emails: charsets, encoded words, parts, robots."""

from __future__ import annotations

from pathlib import Path

from omnicc.app.email_threads import reference_in, reply_subject, with_token
from omnicc.channels.email.markup import html_to_text, sanitize_html
from omnicc.channels.email.mime import compose, parse_bytes, read_email

CORPUS = Path(__file__).parents[4] / "tests" / "integration" / "email" / "corpus"


def corpus(name: str, **values: str) -> bytes:
    raw = (CORPUS / name).read_bytes()
    for key, value in values.items():
        raw = raw.replace(("{" + key + "}").encode(), value.encode())
    return raw


def test_multipart_alternative_with_encoded_words() -> None:
    email = read_email(corpus("alternative.eml"))
    assert email.subject == "Lasku maksettiin kahdesti – tilaus 4567"
    assert email.from_address == "maria.virtanen@example.fi"
    assert email.from_name == "Maria Virtanen"
    assert email.message_id == "<CAF9x2h=K8u7QpL3@mail.example.fi>"
    assert "veloitettiin tilauksesta 4567 kahdesti" in email.text
    assert "<b>4567</b>" in email.safe_html
    assert email.automation is None and email.bounce is None and email.files == ()


def test_inline_image_becomes_a_data_uri_and_a_file() -> None:
    email = read_email(corpus("inline-image.eml"))
    assert 'src="data:image/png;base64,' in email.safe_html
    assert "cid:" not in email.safe_html
    [image] = email.files
    assert (image.filename, image.content_type, image.is_inline) == ("shot.png", "image/png",
                                                                     True)
    assert image.data.startswith(b"\x89PNG")
    assert email.text == "The app shows this:\n\nLars"


def test_attachments_and_iso_8859_1_filename() -> None:
    email = read_email(corpus("attachment.eml"))
    assert email.subject == "Rechnung für März"
    names = [(f.filename, f.content_type) for f in email.files]
    assert names == [("Rechnung März.pdf", "application/pdf"),
                     ("invoice.pdf.exe", "application/octet-stream")]
    assert email.files[0].data.startswith(b"%PDF-")


def test_iso_8859_1_body() -> None:
    email = read_email(corpus("latin1.eml"))
    assert email.from_name == "Renée Dupré"
    assert email.subject == "Commande non reçue"
    assert "n'est pas arrivée. Où est-elle ?" in email.text


def test_shift_jis_body_and_iso_2022_jp_subject() -> None:
    email = read_email(corpus("shift-jis.eml"))
    assert email.subject == "注文について"
    assert email.from_name == "山田太郎"
    assert "注文した商品がまだ届いていません" in email.text


def test_auto_reply_is_a_robot() -> None:
    email = read_email(corpus("auto-reply.eml", in_reply_to="<x@y>"))
    assert email.automation == "auto-submitted: auto-replied"
    assert email.bounce is None
    assert email.in_reply_to == "<x@y>"


def test_dsn_bounce_names_the_original_and_the_failure() -> None:
    email = read_email(corpus("bounce.eml", recipient="gone@example.fi",
                              original_message_id="<abc.REF@support.example>"))
    assert email.automation == "bounce"
    assert email.bounce is not None
    assert email.bounce.original_message_id == "<abc.REF@support.example>"
    assert email.bounce.recipients == ("gone@example.fi",)
    assert email.bounce.status == "5.1.1"
    assert "User unknown" in email.bounce.diagnostic


def test_reply_chain_threading_headers() -> None:
    email = read_email(corpus("reply-chain.eml", reference="ABCD2345", in_reply_to="<b@s>",
                              references="<a@c> <b@s>"))
    assert email.in_reply_to == "<b@s>"
    assert email.references == ("<a@c>", "<b@s>")
    assert reference_in(email.subject) == "ABCD2345"
    assert "Palautus näkyy" in email.text


def test_malicious_html_is_defused() -> None:
    email = read_email(corpus("malicious.eml"))
    html = email.safe_html.lower()
    for bad in ("<script", "onerror", "onload", "javascript:", "<iframe", "<form", "<input",
                "<style", "tracker.example.net", "<svg", "alert("):
        assert bad not in html, bad
    assert 'href="https://example.net/real"' in html
    assert "fetch(" not in email.text and "Please see your invoice" in email.text


def test_sanitize_keeps_only_known_inline_images() -> None:
    html = sanitize_html('<img src="cid:a"><img src="cid:b"><img src="data:text/html;base64,PA==">',
                         {"a": "data:image/png;base64,AAAA"})
    assert html.count("<img") == 3
    assert html.count('src="data:image/png;base64,AAAA"') == 1
    assert "text/html" not in html


def test_html_to_text() -> None:
    text = html_to_text("<p>Hello <b>you</b></p><ul><li>one</li><li>two</li></ul>"
                        "<a href='https://x.example/'>site</a><style>p{}</style>")
    assert text == "Hello you\n\n- one\n- two\nsite <https://x.example/>"


def test_missing_message_id_dedups_by_content() -> None:
    first = read_email(corpus("no-message-id.eml"))
    again = read_email(corpus("no-message-id.eml"))
    assert first.message_id == ""
    assert first.dedup_key == again.dedup_key == first.content_hash


def test_broken_charset_does_not_fail() -> None:
    raw = (b"From: a@b.example\r\nSubject: =?x-unknown?Q?abc?=\r\nContent-Type: text/plain; "
           b"charset=x-unknown\r\n\r\nhello \xe9\r\n")
    email = read_email(raw)
    assert "hello" in email.text


def test_subject_token() -> None:
    assert with_token("Hello", "ABCD2345") == "Hello [#ABCD2345]"
    assert with_token("Hello [#ABCD2345]", "ABCD2345") == "Hello [#ABCD2345]"
    assert reply_subject("RE: Aw: Hello [#ABCD2345]", "ABCD2345") == "Re: Hello [#ABCD2345]"
    assert reference_in("Re: x [#abcd2345]") == "ABCD2345"


def test_composed_reply_threads_and_marks_automatic() -> None:
    from datetime import UTC, datetime

    from omnicc.app.emails import OutgoingEmail
    message = compose(OutgoingEmail(
        email_id="1", mailbox_id="m", from_address="support@support.example",
        from_name="Support Å", to=("maria@example.fi",), subject="Re: Hëllo [#ABCD2345]",
        message_id="<n@support.example>", date=datetime(2026, 11, 23, tzinfo=UTC),
        in_reply_to="<b@s>", references=("<a@c>", "<b@s>"), text="Hei Maria", is_automatic=True))
    parsed = parse_bytes(bytes(message))
    assert parsed["In-Reply-To"] == "<b@s>"
    assert parsed["References"] == "<a@c> <b@s>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert str(parsed["Subject"]) == "Re: Hëllo [#ABCD2345]"
    assert read_email(bytes(message)).automation is not None


def _robot(headers: str, sender: str = "someone@example.org") -> str | None:
    raw = f"From: {sender}\r\nSubject: x\r\n{headers}\r\nhello\r\n".encode()
    return read_email(raw).automation


def test_robot_signs() -> None:
    assert _robot("") is None
    assert _robot("Auto-Submitted: no\r\n") is None
    assert _robot("Auto-Submitted: auto-generated\r\n") == "auto-submitted: auto-generated"
    assert _robot("Precedence: bulk\r\n") == "precedence: bulk"
    assert _robot("Precedence: first-class\r\n") is None
    assert _robot("X-Autoreply: yes\r\n") == "x-autoreply"
    assert _robot("List-Id: <news.example.org>\r\n") == "mailing list"
    assert _robot("Return-Path: <>\r\n") == "null sender"
    assert _robot("", sender="no-reply@example.org") == "robot sender"
    assert _robot("", sender="Postmaster@example.org") == "bounce"


def test_a_bounce_without_the_report_format_still_names_the_original() -> None:
    raw = (b"From: MAILER-DAEMON@mx.example.org\r\nSubject: failure notice\r\n\r\n"
           b"Sorry, I could not deliver.\r\n--- Below this line is a copy of the message.\r\n"
           b"Message-ID: <ours.ABCD2345@support.example>\r\nSubject: Re: hi\r\n")
    email = read_email(raw)
    assert email.bounce is not None
    assert email.bounce.original_message_id == "<ours.ABCD2345@support.example>"
