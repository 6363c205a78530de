"""DKIM oversigns the headers it signs (security review L9).

Anyone holding one genuine digest could add a second From or Subject above the real one (mail
readers show the first) and pass it on with a valid signature, because `h=` listed each header
once. Now every signed header is listed once more than it occurs, on the OpenSSL signer and on
the dkimpy fallback; dkimpy still verifies the untouched message.
"""

from __future__ import annotations

import pytest

from newsletter.mail import message as mime
from newsletter.testing import dkim_test_key

dkim = pytest.importorskip("dkim")

ADDED = [
    b"From: Paper Digest <digest@news.example.org>",
    b"Subject: Your account is suspended, log in here",
    b"To: eve@example.org",
    b"List-Unsubscribe: <https://evil.example/u>",
]


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dkim")
    record = dkim_test_key(folder / "k.pem")
    return folder / "k.pem", (
        lambda name, **_: record if name == b"s1._domainkey.news.example.org." else None
    )


def digest(key_path) -> bytes:
    env = mime.Envelope(
        mail_from="Paper Digest <digest@news.example.org>",
        to="ada@example.org",
        subject="Paper Digest, week 48 of 2026",
        message_id=mime.new_message_id("news.example.org", "3.7"),
        headers={
            "List-Id": "Paper Digest <digest.news.example.org>",
            "List-Unsubscribe": "<https://news.example.org/unsubscribe/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    raw = mime.build_message(env, "Hello\n" + "word " * 50, "<p>hi</p>")
    return mime.dkim_sign(raw, selector="s1", domain="news.example.org", key_path=key_path)


def signed_names(signed: bytes) -> list[bytes]:
    tag = signed.split(b"h=", 1)[1].split(b";", 1)[0]
    return tag.replace(b"\r\n", b"").replace(b"\t", b"").replace(b" ", b"").split(b":")


@pytest.mark.parametrize("signer", ["openssl", "dkimpy"])
def test_a_header_added_on_top_of_a_signed_digest_breaks_the_signature(key, signer, monkeypatch):
    key_path, dns = key
    if signer == "dkimpy":  # the fallback dkim_sign takes for keys OpenSSL's path does not
        monkeypatch.setattr(mime, "_rsa_key", lambda _path: None)
    signed = digest(key_path)
    assert dkim.verify(signed, dnsfunc=dns)
    names = signed_names(signed)
    for name in (b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe-post"):
        assert names.count(name) == 2, name  # one present, one more: before the fix, 1
    for header in ADDED:
        forged = header + b"\r\n" + signed  # above the signature, where readers look first
        assert not dkim.verify(forged, dnsfunc=dns), header


def test_headers_that_are_absent_are_not_signed_at_all():
    fields = [(b"from", b"x"), (b"subject", b"y"), (b"subject", b"z"), (b"x-other", b"w")]
    assert mime.signed_header_names(fields) == [b"from", b"from", b"subject", b"subject", b"subject"]


def test_a_from_and_list_id_of_any_spelling_go_out_well_formed_and_signed(key):
    """Operators' names and domains (helpers' hunt, 2 Dec 2026):
    - a long non-ASCII From name was folded with a bare LF: every signature failed;
    - "Paper Digest: ML Lab" went out unquoted (a group, with a comma two mailboxes);
    - a non-ASCII From domain made every email fail to build (its Message-ID);
    - a non-ASCII List-Id was encoded whole, hiding its <id> from filters."""
    import email
    import email.policy
    from email.header import decode_header, make_header
    from email.utils import parseaddr

    from newsletter.domains import mail_domain

    key_path, dns = key
    long_name = "Équipe Apprentissage Automatique – Université de Montréal"
    for mail_from, shown in (
        (f"{long_name} <digest@news.example.org>", long_name),
        ("Paper Digest: ML Lab <digest@news.example.org>", "Paper Digest: ML Lab"),
        ("Paper Digest, ML Lab <digest@news.example.org>", "Paper Digest, ML Lab"),
    ):
        env = mime.Envelope(
            mail_from=mail_from,
            to="ada@example.org",
            subject="Paper Digest",
            message_id=mime.new_message_id("news.example.org", "3.7"),
            headers={"List-Id": "Revue Päper <digest.news.example.org>"},
        )
        raw = mime.dkim_sign(
            mime.build_message(env, "Hello\n", "<p>hi</p>"),
            selector="s1",
            domain="news.example.org",
            key_path=key_path,
        )
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert b"\n" not in head.replace(b"\r\n", b"")  # every fold is CRLF
        assert dkim.verify(raw, dnsfunc=dns), mail_from
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        [sender] = msg["From"].addresses
        assert sender.addr_spec == "digest@news.example.org" and msg["From"].defects == ()
        raw_from = email.message_from_bytes(raw)["From"]  # RFC 2047 decoding joins adjacent words
        assert parseaddr(str(make_header(decode_header(raw_from)))) == (shown, "digest@news.example.org")
        assert (
            b"<digest.news.example.org>" in head
            and str(msg["List-Id"]) == "Revue Päper <digest.news.example.org>"
        )
    assert mail_domain("Paper Digest <digest@bücher.de>") == "xn--bcher-kva.de"
    env = mime.Envelope(
        mail_from="Paper Digest <digest@bücher.de>",
        to="ada@example.org",
        subject="Paper Digest",
        message_id=mime.new_message_id(mail_domain("Paper Digest <digest@bücher.de>"), "3.7"),
    )
    assert b"From: Paper Digest <digest@xn--bcher-kva.de>" in mime.build_message(env, "Hi\n", "<p>hi</p>")
