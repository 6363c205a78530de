"""The admin API's bodies and answers that the core does not define itself (the core's models,
`SubscriberPublic`, `ImportReport`, `SubscriberHistory`, … are returned as they are)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from newsletter.inspection import DeliveryPage
from newsletter.models import MAX_ROW_ID, Frequency
from newsletter.operations import IssueSummary
from newsletter.validation import WholeNumber

# A field the route does not know is a 422: {"confirm": true} for "confirmed" was ignored, and the
# reader got the double opt-in the operator meant to skip; {"subscriber": 8} sent a generic digest.
STRICT_BODY = ConfigDict(extra="forbid")


class NewSubscriber(BaseModel):
    """Add one address: the double opt-in (a confirmation email), or `confirmed` if you hold
    their consent (recorded as `imported`)."""

    model_config = STRICT_BODY
    email: str = Field(max_length=320)
    interests: str = Field(default="", max_length=2000)
    frequency: Frequency = Frequency.weekly
    max_papers: WholeNumber = Field(default=10, ge=1, le=50)
    confirmed: bool = False
    resubscribe: bool = False  # with confirmed: a reader who unsubscribed or bounced (they asked)


class Removal(BaseModel):
    """The address and its status now ("erased" when every record of it is gone)."""

    email: str
    status: str


class Unsuppress(BaseModel):
    model_config = STRICT_BODY
    email: str = Field(max_length=320)


class IssueDetail(IssueSummary):
    paper_titles: list[str]
    failures: DeliveryPage  # the first page of failed and deferred deliveries, with replies


class Resumed(BaseModel):
    issue_id: int
    put_back: int  # refused deliveries put back to be sent again
    counts: dict[str, int]


class PauseBody(BaseModel):
    model_config = STRICT_BODY
    reason: str = Field(default="", max_length=500)


class SendBody(BaseModel):
    model_config = STRICT_BODY
    frequency: Frequency = Frequency.weekly


class DueReport(BaseModel):
    """What a send would do now: the period, how many readers are due, how many papers."""

    period: str
    due: int
    papers: int


class PreviewBody(BaseModel):
    """Whose digest: a subscriber's (by id) or some interests'."""

    model_config = STRICT_BODY
    subscriber_id: WholeNumber | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    interests: str | None = Field(default=None, max_length=2000)
    limit: WholeNumber | None = Field(default=None, ge=1, le=50)


class PreviewItem(BaseModel):
    paper_id: int
    title: str
    score: float
    relevance: float
    trending: float
    why: str
    for_you: bool  # under "For you" in the email (the items come in the email's order)


class Preview(BaseModel):
    subject: str
    items: list[PreviewItem]
    text: str
    html: str


class TestSendBody(BaseModel):
    """Send the digest of a subscriber (by id) or of some interests to `to`."""

    model_config = STRICT_BODY
    __test__ = False

    to: str = Field(max_length=320)
    subscriber_id: WholeNumber | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    interests: str | None = Field(default=None, max_length=2000)


class Stats(BaseModel):
    subscribers: dict[str, int]  # by status
    issues: list[IssueSummary]
