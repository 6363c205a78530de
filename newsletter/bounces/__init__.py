"""Bounces and complaints that arrive after the relay's 250.

`verp.py` writes and reads the addresses that name a message (imported by `mail/compose.py`,
so this package's `__init__` imports nothing); `events.py` records one event (`record_bounce`,
the entry point of every source: DSNs, ARF, mailto:, provider webhooks); `scoring.py` the
soft-bounce score; `reports.py` what operators see; `dsn.py` reads a mail into events;
`inbound.py` the SMTP server `newsletter inbound serve` runs.
"""
