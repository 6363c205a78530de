"""Mail providers' event webhooks, each read into the same `BounceEvent`s: Amazon SES through
SNS (`ses.py`), Mailgun (`mailgun.py`), Postmark (`postmark.py`).

No HTTP here: `web/provider_hooks.py` authenticates what it can at the edge (Postmark's basic
auth), hands the body to an adapter, and records what the adapter returns. An adapter checks
the provider's own signature where there is one, and raises `Refused` (403) or `Malformed`
(400); an event type it does not act on is `Batch.ignored`, answered 200 so that the provider
does not retry it.
"""
