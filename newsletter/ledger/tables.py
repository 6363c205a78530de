"""The tables the ledger's statements use (SQLAlchemy Core handles of the SQLModel tables)."""

from __future__ import annotations

from newsletter.models import Delivery, DeliveryState, Issue, Subscriber

DELIVERIES = Delivery.__table__
SUBSCRIBERS = Subscriber.__table__
ISSUES = Issue.__table__
CLAIMABLE = (DeliveryState.pending, DeliveryState.deferred)
