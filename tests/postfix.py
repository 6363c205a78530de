"""A private Postfix for the tests: its own config, queue and mail folders, on free ports.

It relays what the product sends: mail for `local_domain` is delivered to Maildirs by
virtual(8) when the mailbox is listed, and bounced by Postfix itself (a DSN, after the 250)
when it is not; mail for `bounce_domain` goes to `smtp:[127.0.0.1]:inbound_port`, where the
product's inbound endpoint listens. Needs the Debian package `postfix` and root (the master
runs as root, its daemons as the `postfix` user), as in `.ci/run`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"


def unavailable() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if not (os.path.exists(POSTFIX) and os.path.exists(POSTCONF)):
        return "Postfix is not installed (apt-get install postfix; scripts/system-deps.sh does)"
    if os.geteuid() != 0:
        return "a private Postfix needs root (its master binds ports and drops to the postfix user)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no postfix user (the Debian package creates it)"
    return None


class PrivatePostfix:
    def __init__(
        self,
        root: Path,
        port: int,
        local_domain: str,
        mailboxes: list[str],
        bounce_domain: str,
        inbound_port: int,
    ) -> None:
        self.root, self.port, self.local_domain = root, port, local_domain
        self.config, self.queue, self.mail = root / "etc", root / "spool", root / "mail"
        for folder in (self.config, self.queue, root / "data", self.mail):
            folder.mkdir(parents=True, exist_ok=True)
        user = pwd.getpwnam("postfix")
        os.chown(self.mail, user.pw_uid, user.pw_gid)
        os.chown(root / "data", user.pw_uid, user.pw_gid)
        shutil.copy("/etc/postfix/master.cf", self.config / "master.cf")
        (self.config / "main.cf").write_text("")
        (self.config / "vmailbox").write_text(
            "".join(f"{box}@{local_domain} {local_domain}/{box}/\n" for box in mailboxes)
        )
        (self.config / "transport").write_text(f"{bounce_domain} smtp:[127.0.0.1]:{inbound_port}\n")
        self._postconf(
            "compatibility_level=3.6",
            f"queue_directory={self.queue}",
            f"data_directory={root / 'data'}",
            f"maillog_file={root / 'maillog'}",
            f"maillog_file_prefixes={root}",
            "myhostname=mta.test",
            "mydomain=mta.test",
            "mydestination=",
            "inet_interfaces=127.0.0.1",
            "inet_protocols=ipv4",
            "mynetworks=127.0.0.0/8",
            "smtp_dns_support_level=disabled",
            "smtputf8_enable=no",
            f"virtual_mailbox_domains={local_domain}",
            f"virtual_mailbox_base={self.mail}",
            f"virtual_mailbox_maps=texthash:{self.config / 'vmailbox'}",
            f"virtual_uid_maps=static:{user.pw_uid}",
            f"virtual_gid_maps=static:{user.pw_gid}",
            # accept unknown mailboxes at SMTP time, so that Postfix bounces them afterwards
            "smtpd_reject_unlisted_recipient=no",
            f"transport_maps=texthash:{self.config / 'transport'}",
            "alias_maps=",
            "alias_database=",
            "maximal_queue_lifetime=1h",
            "bounce_queue_lifetime=1h",
            # Postfix 3.9's default: a client that pipelines where RFC 2920 does not allow it is
            # cut off. Ours sends the next MAIL, RCPT and DATA right behind a message's `.`.
            "smtpd_forbid_unauth_pipelining=yes",
        )
        master = (self.config / "master.cf").read_text().splitlines()
        master = [
            f"127.0.0.1:{port} inet n - n - - smtpd" if line.startswith("smtp      inet") else line
            for line in master
        ]
        (self.config / "master.cf").write_text("\n".join(master) + "\n")
        subprocess.run([POSTCONF, "-c", str(self.config), "-F", "*/*/chroot=n"], check=True)

    def _postconf(self, *settings: str) -> None:
        subprocess.run([POSTCONF, "-c", str(self.config), "-e", *settings], check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.config), "start"], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"postfix did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.config), "stop"], capture_output=True)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def delivered(self, mailbox: str) -> list[Path]:
        """The messages in a local mailbox's Maildir."""
        return sorted((self.mail / self.local_domain / mailbox / "new").glob("*"))
