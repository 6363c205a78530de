"""Reading a mail that came back: a DSN, an ARF complaint, an auto-reply, or something else.

Delivery status notifications (RFC 3464) are read from their `message/delivery-status` part
(`Action`, `Status`, `Final-Recipient`, `Diagnostic-Code`); anything else that looks like a
bounce goes through flufl.bounce, Mailman's detectors for the formats of every common MTA.
The RFC 3463 status decides the kind:

- policy: `x.7.x` (refused for what we sent or who we are: never the reader's fault);
- soft: `4.x.x` (a final failure after retries), a full mailbox `5.2.2`, too big `5.2.3`/`5.3.4`,
  their system full or closed `5.3.1`/`5.3.2`, out of time `5.4.7`;
- hard: any other `5.x.x` (`5.1.x` no such address, `5.2.1` disabled, `5.4.1` …).

With no RFC 3463 status, the remote server's basic reply code decides (RFC 5321: `4xx` and
`552`, storage exceeded, are soft; other `5xx` hard); with neither, a failure flufl.bounce calls
permanent is hard. A `message/delivery-status` part is read whatever report type wraps it.

`Action: delayed` and warnings are not bounces (the MTA is still trying): nothing is counted,
including the delay notices MTAs write as plain text ("has not yet been delivered", Postfix's
"Delayed Mail (still being retried)"), which flufl.bounce would take for failures.
Auto-replies (RFC 3834 `Auto-Submitted: auto-replied`, `X-Autoreply`, `Precedence:
auto_reply`, vacation subjects) are recognised and ignored.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email import message_from_string
from email.message import EmailMessage, Message

from flufl.bounce import all_failures

from newsletter.models import BounceKind


class Nature(str, enum.Enum):
    dsn = "dsn"  # a bounce: findings say who and why
    arf = "arf"  # a complaint (feedback loop)
    autoreply = "autoreply"  # out of office and friends: ignored
    warning = "warning"  # delayed, still trying: ignored
    other = "other"  # none of the above (a person writing, spam): ignored


@dataclass(frozen=True)
class Finding:
    kind: BounceKind
    address: str
    status: str = ""
    diagnostic: str = ""


@dataclass(frozen=True)
class Reading:
    nature: Nature
    findings: tuple[Finding, ...] = ()
    original: Message | None = None  # the returned message or its headers, when attached


# RFC 3464's report, and RFC 6533's for mail to addresses that are not ASCII (sent with
# SMTPUTF8): that one was read as no bounce at all, so such a reader was never bounced.
DSN_PARTS = ("message/delivery-status", "message/global-delivery-status")
ATTACHED_PARTS = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/rfc822-headers",
    "message/global",
    "message/global-headers",
)
# Not inside a dotted number: "5.9.44.10 does not like recipient" (qmail) and "host mx
# [4.2.2.1]" (Exim) are IP addresses, which were read as status 5.9.44 (hard) and 4.2.2 (soft).
_STATUS = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# Their mailbox or system, for now: full, too big for it, not accepting, out of time.
_SOFT_5 = {"5.2.2", "5.2.3", "5.3.1", "5.3.2", "5.3.4", "5.4.7"}
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|vacation|abwesenheit)", re.I
)
_SEVERITY = {BounceKind.hard: 3, BounceKind.soft: 2, BounceKind.policy: 1}
# A basic SMTP reply code where a server's answer is quoted: after "said:", after the colon
# that ends Exim's "SMTP error … after RCPT TO:<…>:", after an echoed command's ">" in a
# transcript, or after the `smtp;` of a Diagnostic-Code ("smtp; 452 Mailbox full",
# "450-Greylisted"). Only ever searched in the report's own text.
_REPLY = re.compile(r"(?:said:|[:;>])\s*([45][0-5]\d)(?=[ -])")
# Where a bounce's own text starts quoting the returned message (qmail, Exim, Sendmail, Postfix).
_QUOTE_START = re.compile(
    r"^[ \t]*-+ ?(below this line is a copy of the message|this is a copy of the message"
    r"|original message|the original message|undelivered message)",
    re.I | re.M,
)
_DELAY_SUBJECT = re.compile(
    r"^\s*(warning: message \S+ delayed|delayed mail|warning: could not send message for past"
    r"|delivery status notification \(delay\)|delivery delayed)",
    re.I,
)
_DELAY_TEXT = re.compile(
    r"has not yet been delivered|still being retried|will (continue to try|keep trying)"
    r"|not yet been able to deliver|this is a warning only",
    re.I,
)
_FINAL_TEXT = re.compile(r"permanent (error|failure)|failed permanently|given up|delivery has failed", re.I)


def kind_of_status(status: str) -> BounceKind | None:
    """hard, soft or policy for an RFC 3463 status; None for success (2.x.x) or no status."""
    match = _STATUS.search(status or "")
    if match is None or match[1] == "2":
        return None
    code = f"{match[1]}.{int(match[2])}.{int(match[3])}"
    if match[2] == "7":
        return BounceKind.policy
    if match[1] == "4" or code in _SOFT_5:
        return BounceKind.soft
    return BounceKind.hard


def kind_of_reply(text: str) -> BounceKind | None:
    """soft or hard for the first basic SMTP reply code quoted in `text` (see `_REPLY`)."""
    match = _REPLY.search(text or "")
    if match is None:
        return None
    return BounceKind.soft if match[1].startswith("4") or match[1] == "552" else BounceKind.hard


def worst(findings: tuple[Finding, ...]) -> Finding | None:
    """The finding that says most about the reader: hard before soft before policy."""
    return max(findings, key=lambda f: _SEVERITY.get(f.kind, 0), default=None)


def read_message(msg: EmailMessage) -> Reading:
    """What `msg` is, and for a bounce, who bounced how (see the module docstring)."""
    report = _report_type(msg)
    if report == "feedback-report":
        return Reading(Nature.arf, original=_attached(msg))
    if report in ("delivery-status", "global-delivery-status") or any(
        part.get_content_type() in DSN_PARTS for part in msg.walk()
    ):
        return _read_dsn(msg)
    if is_vacation(msg):
        return Reading(Nature.autoreply)
    if is_delay_warning(msg):
        return Reading(Nature.warning)
    reading = _read_heuristic(msg)
    if reading.nature is Nature.other and is_autoreply(msg):
        return Reading(Nature.autoreply)
    return reading


def is_vacation(msg: Message) -> bool:
    """An out-of-office or other personal auto-reply, by the marks those carry."""
    precedence = str(msg.get("Precedence", "")).strip().lower()
    return (
        any(msg.get(h) is not None for h in ("X-Autoreply", "X-Autorespond"))
        or precedence == "auto_reply"
        or bool(_AUTOREPLY_SUBJECT.match(str(msg.get("Subject", ""))))
    )


def is_delay_warning(msg: Message) -> bool:
    """A plain-text notice that delivery is late and still being tried (no bounce yet): by its
    subject, or by the wording of its own text (never of the returned message) where that text
    does not also say the failure is final."""
    if _DELAY_SUBJECT.match(str(msg.get("Subject", ""))):
        return True
    text = _text(msg)
    return bool(_DELAY_TEXT.search(text)) and not _FINAL_TEXT.search(text)


def is_autoreply(msg: Message) -> bool:
    """Any automatic answer (RFC 3834 `Auto-Submitted: auto-replied`); MTAs mark their own
    bounces this way too, so this is asked only of mail no detector calls a bounce."""
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    return auto.startswith("auto-replied") or is_vacation(msg)


# Feedback types that are no reader's complaint: a "not-spam" report takes one back, and an
# "auth-failure" report (RFC 6591) is a receiver telling us a DKIM or SPF check failed. Counted
# as complaints, a failure report unsubscribed and suppressed the reader of the message.
NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})


def complaint_type(msg: EmailMessage) -> str:
    """The ARF Feedback-Type ("abuse" when unsaid); see NOT_COMPLAINTS for those that are none."""
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            for block in _blocks(part):
                if block.get("Feedback-Type"):
                    return str(block["Feedback-Type"]).strip().lower()
    return "abuse"


def _report_type(msg: Message) -> str | None:
    if msg.get_content_type() != "multipart/report":
        return None
    return str(msg.get_param("report-type", "") or "").lower() or None


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status, global-delivery-status or feedback-report
    part. Python splits only message/delivery-status into its blocks: the global one (RFC 6533)
    comes as one message whose body holds the recipients' blocks, read here."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []
    blocks = [p for p in payload if isinstance(p, Message)]
    rest = blocks[0].get_payload() if len(blocks) == 1 else None
    if isinstance(rest, str) and rest.strip():
        text = rest.replace("\r\n", "\n")
        blocks += [
            message_from_string(b.strip("\n") + "\n") for b in re.split(r"\n[ \t]*\n", text) if b.strip()
        ]
    return blocks


def _attached(msg: Message) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() in ATTACHED_PARTS:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
            if isinstance(inner, str):
                return message_from_string(inner)
    return None


def _field(block: Message, name: str) -> str:
    value = str(block.get(name, "") or "")
    return " ".join(value.split())


def _address(field: str) -> str:
    """The address of `rfc822; ada@example.org`."""
    return field.split(";", 1)[-1].strip().strip("<>")


def _read_dsn(msg: EmailMessage) -> Reading:
    findings, delayed = [], False
    in_text = _status_in_text(msg)  # the report's own words, read once for all its recipients
    for part in msg.walk():
        if part.get_content_type() not in DSN_PARTS:
            continue
        for block in _blocks(part)[1:] or _blocks(part):
            action = _field(block, "Action").lower()
            recipient = _field(block, "Original-Recipient") or _field(block, "Final-Recipient")
            if not recipient or action in ("delivered", "relayed", "expanded"):
                continue
            if action == "delayed":
                delayed = True
                continue
            diagnostic = _field(block, "Diagnostic-Code")
            status = _status(_field(block, "Status"), diagnostic)
            reply = kind_of_reply(diagnostic)
            if reply is None and (not status or status.endswith(".0.0")):  # the report's text may say
                status = in_text or status
            kind = kind_of_status(status) or reply or BounceKind.hard
            finding = Finding(kind, _address(recipient), status, diagnostic[:1000])
            if finding not in findings:
                findings.append(finding)
    if findings:
        return Reading(Nature.dsn, tuple(findings), _attached(msg))
    if delayed:
        return Reading(Nature.warning)
    return _read_heuristic(msg)  # a report with no usable fields: try the detectors


def _status(status_field: str, diagnostic: str) -> str:
    """The Status field's code; when that is a bare `x.0.0` (Exim writes 5.0.0 for everything),
    the remote server's own code from the Diagnostic-Code, if it gave one."""
    status = (_STATUS.search(status_field) or [""])[0]
    if status.endswith(".0.0") or not status:
        specific = [m[0] for m in _STATUS.finditer(diagnostic) if not m[0].endswith(".0.0") and m[1] != "2"]
        return specific[0] if specific else status
    return status


def _read_heuristic(msg: Message) -> Reading:
    """flufl.bounce's detectors; a status code in the text, if any, sharpens the kind."""
    try:
        temporary, permanent = all_failures(msg)
    except (LookupError, ValueError, TypeError, AttributeError):
        # A detector that trips over a broken message (Yale's on one without From): not a
        # bounce we can read.
        return Reading(Nature.other)
    if not permanent:
        return Reading(Nature.warning if temporary else Nature.other)
    status = _status_in_text(msg)
    kind = kind_of_status(status) or kind_of_reply(_text(msg)) or BounceKind.hard
    findings = tuple(
        Finding(kind, a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a), status)
        for a in sorted(permanent)
    )
    return Reading(Nature.dsn, findings, _attached(msg))


def _status_in_text(msg: Message) -> str:
    for text in _texts(msg):
        found = [m[0] for m in _STATUS.finditer(text) if m[1] != "2"]
        specific = [code for code in found if not code.endswith(".0.0")]  # 5.0.0 says nothing
        if found:
            return (specific or found)[0]
    return ""


def _text(msg: Message) -> str:
    return "\n".join(_texts(msg))


def _texts(msg: Message) -> list[str]:
    """The decoded text/plain parts of the report itself, never of the message it returns (our
    digest, whose abstracts hold any number and phrase)."""
    texts = []
    for part in _own_parts(msg):
        if part.get_content_type() == "text/plain":
            try:
                text = part.get_payload(decode=True) or b""
            except (ValueError, LookupError):
                continue
            own = bytes(text).decode("utf-8", "replace")
            quote = _QUOTE_START.search(own)
            texts.append(own[: quote.start()] if quote else own)
    return texts


def _own_parts(msg: Message) -> list[Message]:
    """`msg` and its MIME parts, not descending into attached messages (`message/*`)."""
    if msg.get_content_maintype() == "message":
        return []
    payload = msg.get_payload()
    if msg.is_multipart() and isinstance(payload, list):
        return [part for sub in payload if isinstance(sub, Message) for part in _own_parts(sub)]
    return [msg]
