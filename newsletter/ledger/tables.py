"""The tables the ledger's statements use (SQLAlchemy Core handles of the SQLModel tables)."""

from __future__ import annotations

from newsletter.models import Delivery, DeliveryState, Issue, Subscriber, table_of

DELIVERIES = table_of(Delivery)
SUBSCRIBERS = table_of(Subscriber)
ISSUES = table_of(Issue)
CLAIMABLE = (DeliveryState.pending, DeliveryState.deferred)
