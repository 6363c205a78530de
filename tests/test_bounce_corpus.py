"""Every real-world bounce of flufl.bounce's corpus (tests/data/dsn/) classifies as expected.

The addresses and the permanent (here: hard) or temporary (here: warning, nothing counted)
verdicts are flufl.bounce's own test table (its tests/test_detectors.py); where a sample's RFC
3463 status makes it soft or policy, the row says why.
"""

from __future__ import annotations

import email
import email.policy
import random
from pathlib import Path

import pytest

from newsletter.bounces.dsn import Nature, kind_of_status, read_message, worst

CORPUS = Path(__file__).parent / "data" / "dsn"

# (file, what it is, the kind of bounce, the addresses that bounced)
EXPECTED = [
    ("aol_01.txt", "dsn", "hard", ["screenname@aol.com"]),
    ("bounce_01.txt", "other", None, []),
    ("bounce_02.txt", "dsn", "hard", ["userx@example.com"]),
    ("bounce_03.txt", "dsn", "hard", ["userx@example.uk"]),
    ("caiwireless_01.txt", "dsn", "hard", ["userx@example.com"]),
    ("dsn_01.txt", "dsn", "hard", ["userx@example.com"]),
    ("dsn_02.txt", "dsn", "soft", ["zzzzz@example.uk"]),  # Status 4.4.7: retries ran out
    ("dsn_03.txt", "dsn", "hard", ["userx@example.be"]),
    ("dsn_04.txt", "dsn", "hard", ["userx@example.ch"]),
    ("dsn_05.txt", "warning", None, []),
    ("dsn_06.txt", "warning", None, []),
    ("dsn_07.txt", "warning", None, []),
    ("dsn_08.txt", "warning", None, []),
    (
        "dsn_09.txt",
        "dsn",
        "policy",
        ["userx@example.com"],
    ),  # X.400 gateway: 'Unable to relay' 5.7.1: about us, not the reader
    ("dsn_10.txt", "dsn", "hard", ["anne.person@dom.ain"]),
    ("dsn_11.txt", "dsn", "hard", ["joem@example.com"]),
    ("dsn_12.txt", "dsn", "hard", ["userx@example.jp"]),
    ("dsn_13.txt", "dsn", "hard", ["userx@example.com"]),
    ("dsn_14.txt", "dsn", "hard", ["userx@example.com.dk"]),
    ("dsn_15.txt", "dsn", "hard", ["userx@example.com"]),
    ("dsn_16.txt", "dsn", "hard", ["userx@example.com"]),
    ("dsn_17.txt", "warning", None, []),
    ("dsn_18.txt", "dsn", "hard", ["email@replaced.net"]),
    ("dumbass_01.txt", "other", None, []),
    ("exim_01.txt", "dsn", "hard", ["userx@its.example.nl"]),
    ("groupwise_01.txt", "dsn", "hard", ["userx@example.edu"]),
    ("groupwise_02.txt", "dsn", "hard", ["userx@example.com"]),
    ("groupwise_03.txt", "other", None, []),
    ("hotpop_01.txt", "dsn", "hard", ["userx@example.com"]),
    ("llnl_01.txt", "dsn", "hard", ["user1@example.gov"]),
    ("microsoft_01.txt", "dsn", "hard", ["userx@example.com"]),
    ("microsoft_02.txt", "dsn", "hard", ["userx@example.com"]),
    ("microsoft_03.txt", "dsn", "hard", ["userx@example.com"]),
    ("microsoft_04.txt", "dsn", "hard", ["userx@example.com"]),
    ("netscape_01.txt", "dsn", "hard", ["aaaaa@corel.com", "bbbbb@corel.com"]),
    ("newmailru_01.txt", "dsn", "hard", ["zzzzz@newmail.ru"]),
    ("postfix_01.txt", "dsn", "hard", ["xxxxx@local.ie"]),
    ("postfix_02.txt", "dsn", "hard", ["yyyyy@digicool.com"]),
    ("postfix_03.txt", "dsn", "hard", ["ttttt@ggggg.com"]),
    ("postfix_04.txt", "dsn", "hard", ["userx@mail1.example.com"]),
    ("postfix_05.txt", "dsn", "hard", ["userx@example.net"]),
    ("qmail_01.txt", "dsn", "hard", ["userx@example.de"]),
    ("qmail_02.txt", "dsn", "hard", ["userx@example.com"]),
    ("qmail_03.txt", "dsn", "hard", ["userx@example.jp"]),
    ("qmail_04.txt", "dsn", "hard", ["userx@example.au"]),
    ("qmail_05.txt", "dsn", "hard", ["userx@example.com"]),
    ("qmail_06.txt", "dsn", "hard", ["ntl@xxx.com"]),
    ("qmail_07.txt", "dsn", "hard", ["user@example.net"]),
    ("qmail_08.txt", "autoreply", None, []),  # a vacation message
    ("sendmail_01.txt", "dsn", "hard", ["zzzzz@nfg.nl", "zzzzz@shaft.coal.nl"]),
    ("simple_01.txt", "dsn", "soft", ["bbbsss@example.com"]),  # 552: would exceed the quota
    ("simple_02.txt", "dsn", "hard", ["userx@example.net"]),
    ("simple_03.txt", "warning", None, []),
    ("simple_04.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_05.txt", "dsn", "hard", ["userx@example.net"]),
    ("simple_06.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_07.txt", "dsn", "hard", ["userx@example.net"]),
    ("simple_08.txt", "dsn", "hard", ["userx@example.de"]),
    ("simple_09.txt", "dsn", "hard", ["userx@example.de"]),
    ("simple_10.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_11.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_12.txt", "dsn", "hard", ["userx@example.ac.jp"]),
    ("simple_13.txt", "dsn", "hard", ["userx@example.fr"]),
    ("simple_14.txt", "dsn", "soft", ["userx@example.com", "usery@example.com"]),  # 552 Quota violation
    ("simple_15.txt", "dsn", "hard", ["userx@example.be"]),
    ("simple_16.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_17.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_18.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_19.txt", "dsn", "hard", ["userx@example.com.ar"]),
    ("simple_20.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_21.txt", "warning", None, []),
    ("simple_22.txt", "warning", None, []),
    ("simple_23.txt", "dsn", "hard", ["userx@example.it"]),
    ("simple_24.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_25.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_26.txt", "dsn", "hard", ["userx@example.it"]),
    ("simple_27.txt", "dsn", "hard", ["userx@example.net.py"]),
    ("simple_28.txt", "warning", None, []),
    ("simple_29.txt", "dsn", "hard", ["userx@example.com"]),
    (
        "simple_30.txt",
        "dsn",
        "hard",
        ["userx@example.com"],
    ),  # 553 5.3.0 'No such user here': 5.3.0 says nothing, 553 and the text say hard
    ("simple_31.txt", "dsn", "hard", ["userx@example.fr"]),
    ("simple_32.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_33.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_34.txt", "dsn", "hard", ["roland@example.com"]),
    ("simple_35.txt", "warning", None, []),
    ("simple_36.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_37.txt", "dsn", "hard", ["user@example.edu"]),
    ("simple_38.txt", "dsn", "hard", ["userx@example.com"]),
    ("simple_39.txt", "dsn", "hard", ["userx@example.ru"]),
    ("simple_40.txt", "warning", None, []),
    ("simple_41.txt", "dsn", "hard", ["userx@example.com"]),
    (
        "simple_42.txt",
        "dsn",
        "policy",
        ["david...@gmail.com"],
    ),  # Exim's Status 5.0.0, Gmail's own code 5.7.1 (spam block); flufl's simplematch sees nothing
    ("simple_43.txt", "other", None, []),
    (
        "simple_44.txt",
        "dsn",
        "soft",
        ["user@example.com"],
    ),  # 4.4.4 after 30 attempts: a final failure that may pass another day
    ("simple_45.txt", "dsn", "hard", ["subscriber@earthlink.net"]),
    ("sina_01.txt", "dsn", "hard", ["userx@sina.com", "usery@sina.com"]),
    ("smtp32_01.txt", "dsn", "hard", ["userx@example.ph"]),
    ("smtp32_02.txt", "dsn", "hard", ["userx@example.com"]),
    ("smtp32_03.txt", "dsn", "hard", ["userx@example.com"]),
    ("smtp32_04.txt", "dsn", "hard", ["after_another@example.net", "one_bad_address@example.net"]),
    ("smtp32_05.txt", "dsn", "hard", ["userx@example.com"]),
    ("smtp32_06.txt", "dsn", "hard", ["absolute_garbage_addr@example.net"]),
    ("smtp32_07.txt", "dsn", "hard", ["userx@example.com"]),
    (
        "yahoo_01.txt",
        "dsn",
        "soft",
        ["userx@example.com"],
    ),  # qmail gave up on '#4.4.1' (no connection): temporary in kind, final for this message
    ("yahoo_02.txt", "dsn", "hard", ["userx@example.es"]),
    ("yahoo_03.txt", "dsn", "hard", ["userx@example.com"]),
    ("yahoo_04.txt", "dsn", "hard", ["userx@example.es", "usery@example.uk"]),
    ("yahoo_05.txt", "dsn", "hard", ["userx@example.com", "usery@example.com"]),
    (
        "yahoo_06.txt",
        "dsn",
        "hard",
        ["usera@example.com", "userx@example.com", "usery@example.com", "userz@example.com"],
    ),
    (
        "yahoo_07.txt",
        "dsn",
        "hard",
        ["userw@example.com", "userx@example.com", "usery@example.com", "userz@example.com"],
    ),
    (
        "yahoo_08.txt",
        "dsn",
        "hard",
        [
            "usera@example.com",
            "userb@example.com",
            "userc@example.com",
            "userd@example.com",
            "usere@example.com",
            "userf@example.com",
        ],
    ),
    ("yahoo_09.txt", "dsn", "hard", ["userx@example.com", "usery@example.com"]),
    ("yahoo_10.txt", "dsn", "hard", ["userx@example.com", "usery@example.com", "userz@example.com"]),
    ("yahoo_11.txt", "dsn", "hard", ["bad_user@aol.com"]),
    ("yahoo_12.txt", "dsn", "hard", ["user@yahoo.com"]),
    ("yahoo_13.txt", "dsn", "hard", ["bogus-address@example.net"]),
    ("yale_01.txt", "dsn", "hard", ["userx@cs.yale.edu", "userx@yale.edu"]),
]


def test_every_sample_is_in_the_table():
    assert sorted(p.name for p in CORPUS.glob("*.txt")) == sorted(row[0] for row in EXPECTED)


@pytest.mark.parametrize(("name", "nature", "kind", "addresses"), EXPECTED, ids=[r[0] for r in EXPECTED])
def test_sample_classifies_as_expected(name, nature, kind, addresses):
    msg = email.message_from_bytes((CORPUS / name).read_bytes(), policy=email.policy.default)
    reading = read_message(msg)
    assert reading.nature is Nature(nature)
    assert sorted({f.address.lower() for f in reading.findings}) == addresses
    assert {f.kind.value for f in reading.findings} == ({kind} if kind else set())
    if kind:
        assert worst(reading.findings).kind.value == kind


def test_broken_copies_of_every_sample_are_read_without_an_error():
    """Cut short or with bytes flipped, as a broken MTA or an attacker might send them: every
    one is read as something (usually "other"), none raises."""
    rng = random.Random(13)
    for path in sorted(CORPUS.glob("*.txt")):
        raw = path.read_bytes()
        cut = [raw[: rng.randint(0, len(raw))] for _ in range(4)]
        flipped = bytes(b ^ 0x55 if rng.random() < 0.01 else b for b in raw)
        for broken in (*cut, flipped, raw.replace(b"From:", b"X-Was:")):
            reading = read_message(email.message_from_bytes(broken, policy=email.policy.default))
            assert isinstance(reading.nature, Nature)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("5.1.1", "hard"),
        ("5.1.10", "hard"),
        ("5.2.1", "hard"),
        ("5.4.1", "hard"),
        ("5.0.0", "hard"),
        ("5.2.2", "soft"),
        ("5.2.3", "soft"),
        ("5.3.4", "soft"),
        ("5.4.7", "soft"),
        ("4.2.2", "soft"),
        ("4.4.1", "soft"),
        ("5.7.1", "policy"),
        ("5.7.26", "policy"),
        ("4.7.0", "policy"),
        ("2.0.0", None),
        ("", None),
    ],
)
def test_the_status_decides_the_kind_as_the_readme_says(status, kind):
    found = kind_of_status(status)
    assert (found.value if found else None) == kind


QUOTED_DIGEST = (
    "Paper Digest, week 2024-W03\n\n1. Scaling speech models\n"
    "   We collect a corpus spanning thousands of hours across many languages, covering\n"
    "   450 languages, and train a model that beats the baselines.\n"
    "2. Robust retries\n   Our scheduler will keep trying failed jobs until they succeed.\n"
    "3. Fast inference\n   We release code built on transformers 4.41.2 and vLLM.\n"
)


def test_the_returned_digest_never_decides_what_a_bounce_says():
    """A bounce quotes the digest it returns, whose abstracts hold any number and phrase: an
    indented "450 languages" once made qmail's permanent failure soft, "will keep trying" made it
    a delay warning, and "4.41.2" in an attached copy made an Exim 550 soft."""
    qmail = (CORPUS / "qmail_01.txt").read_text().replace("Message removed", QUOTED_DIGEST)
    reading = read_message(email.message_from_string(qmail, policy=email.policy.default))
    assert reading.nature is Nature.dsn and {f.kind.value for f in reading.findings} == {"hard"}
    exim = (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n"
        "Subject: Mail delivery failed: returning message to sender\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThis is a permanent error. The following address failed:\n"
        "  ada@example.com\n    SMTP error from remote mail server after RCPT TO:<ada@example.com>:\n"
        "    550 unrouteable address\n\n--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\n\nAction: failed\nFinal-Recipient: rfc822;ada@example.com\n"
        "Status: 5.0.0\nDiagnostic-Code: smtp; 550 unrouteable address\n\n"
        "--B\nContent-Type: message/rfc822\n\nFrom: digest@news.example.org\nTo: ada@example.com\n"
        f"Subject: Paper Digest\nContent-Type: text/plain\n\n{QUOTED_DIGEST}\n--B--\n"
    )
    [finding] = read_message(email.message_from_string(exim, policy=email.policy.default)).findings
    assert (finding.kind.value, finding.status) == ("hard", "5.0.0")


def test_an_ip_address_in_the_text_is_never_read_as_the_status():
    """qmail names the remote host by address ("5.9.44.10 does not like recipient") and Exim
    writes "host mx [4.2.2.1]": read as statuses, a full mailbox became hard 5.9.44 (bounced at
    once) and a user unknown soft 4.2.2."""
    qmail = (
        "From: MAILER-DAEMON@mail.example.net\nTo: bounces@news.example.org\nSubject: failure notice\n\n"
        "Hi. This is the qmail-send program at mail.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<ada@example.com>:\n5.9.44.10 does not like recipient.\n"
        "Remote host said: 552 5.2.2 <ada@example.com>: mailbox full\nGiving up on 5.9.44.10.\n"
    )
    [finding] = read_message(email.message_from_string(qmail, policy=email.policy.default)).findings
    assert (finding.kind.value, finding.status) == ("soft", "5.2.2")
    for host, said, kind in (
        ("4.2.2.1", "550 5.1.1 user unknown", "hard"),
        ("5.9.12.34", "552 5.2.2 full", "soft"),
    ):
        assert kind_of_status(f"host mx.example.com [{host}]: {said}").value == kind


GLOBAL_DSN = """From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
To: bounces@news.example.org
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=global-delivery-status; boundary="B"

--B
Content-Type: text/plain; charset=utf-8

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/global-delivery-status

Reporting-MTA: dns; mx.example.com
Arrival-Date: Wed,  2 Dec 2026 11:00:00 +0000 (UTC)

Final-Recipient: utf-8; j\u00f6rg@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <j\u00f6rg@example.com>: Recipient address
    rejected: User unknown

Final-Recipient: rfc822; ada@example.com
Action: delivered
Status: 2.0.0

--B
Content-Type: message/global-headers

From: Paper Digest <digest@news.example.org>
To: j\u00f6rg@example.com
Subject: Paper Digest

--B--
"""


def test_an_internationalised_dsn_is_read_like_any_other():
    """RFC 6533's report, which an MTA sends for mail to an address that is not ASCII (we send
    those with SMTPUTF8), was read as no bounce at all: such a reader was never bounced."""
    reading = read_message(email.message_from_string(GLOBAL_DSN, policy=email.policy.default))
    assert reading.nature is Nature.dsn
    assert [(f.kind.value, f.address, f.status) for f in reading.findings] == [
        ("hard", "jörg@example.com", "5.1.1")
    ]
    assert reading.original is not None and reading.original["To"] == "jörg@example.com"
