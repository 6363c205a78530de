"""Typed settings, read once from NEWSLETTER_* environment variables and one settings file.

Which file: see `newsletter.envfile.find_env_file`. What production refuses: `_refuse_in_production`
(and `newsletter.domains` for addresses that can never be delivered)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from newsletter.db import check_url
from newsletter.domains import ascii_domain, check_base_url, check_logo_url, mail_domain, undeliverable
from newsletter.envfile import find_env_file, read_env_file
from newsletter.errors import ConfigError
from newsletter.logs import event
from newsletter.mail.message import checked_dkim_key

log = logging.getLogger("newsletter.config")

DEV_SECRET = "dev-insecure-secret-change-me"
# Django's deploy check (security.W009): a secret shorter or plainer than this is guessable.
SECRET_MIN_LENGTH = 50
SECRET_MIN_DISTINCT = 5
MAKE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
FALLBACK_MIN_LENGTH = 16  # what production accepted as a secret before; enough for a key on its way out


__all__ = ["ConfigError", "Settings", "get_settings", "reset_settings", "settings_from"]
NO_FILE = (
    "No settings file was read (none of $NEWSLETTER_ENV_FILE, ./.env, /etc/newsletter/newsletter.env): "
    "set NEWSLETTER_ENV_FILE to yours, or write one with `newsletter init`."
)
# Values never echoed in an error message (a database URL may hold a password).
_SECRET_WORDS = ("secret", "password", "token", "key", "database_url")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWSLETTER_", env_file=None, extra="ignore")

    mode: Literal["production", "dev", "demo", "test"] = "production"
    database_url: Annotated[str, AfterValidator(check_url)] = "sqlite:///./var/newsletter.db"
    broker_url: str | None = None
    redis_url: str | None = None  # rate limits shared across web processes; defaults to broker
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"] = "INFO"

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_tls: bool = False  # TLS from the first byte (port 465, RFC 8314); smtp_starttls upgrades
    smtp_starttls: bool = False
    smtp_timeout: float = 30.0
    outbox_dir: Path = Path("./var/outbox")

    mail_from: str = "Paper Digest <digest@localhost>"
    list_id: str = "Paper Digest <digest.localhost>"
    # CAN-SPAM: every commercial email shows a valid physical postal address (every footer here).
    postal_address: str = ""
    postal_address_waived: bool = False  # not bound by CAN-SPAM: production runs without one
    base_url: Annotated[str, AfterValidator(check_base_url)] = "http://127.0.0.1:8000"
    secret_key: str = DEV_SECRET
    # Keys links were signed with before `secret_key` (comma-separated in the environment): links
    # signed with them still verify; new links are signed with `secret_key` only.
    secret_key_fallbacks: Annotated[list[str], NoDecode] = Field(default_factory=list)

    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key_path: Annotated[Path | None, AfterValidator(checked_dkim_key)] = None

    webhook_secret: str | None = None

    confirm_token_hours: int = 72
    link_token_days: int = 180
    confirm_cooldown_minutes: int = 10
    confirmations_per_day: int = Field(default=3, ge=1)  # signup emails per address in 24 hours
    signup_rate_per_ip: int = 10  # signups per IP per minute
    vote_grace_seconds: int = 0  # votes sooner than this after sending are treated as scanner noise
    forget_unconfirmed_days: int = Field(default=14, ge=0)  # signups never confirmed; 0 = keep them

    # Each reader's digest goes out at digest_hour in their own zone, weekly ones on their own
    # weekday; these and `timezone` are the schedule of readers who chose none (the list's).
    digest_weekday: int = Field(default=0, ge=0, le=6)  # 0 = Monday
    digest_hour: int = Field(default=8, ge=0, le=23)
    # Beat ticks hourly; a tick sends slots that came at most this long ago (ticks lost while
    # beat was down are made up). Less than a day, so a slot is never made up into the next.
    catch_up_hours: int = Field(default=6, ge=1, le=23)
    ingest_hour: int = Field(default=5, ge=0, le=23)
    timezone: str = "UTC"
    default_max_papers: int = Field(default=10, ge=1, le=50)
    paper_source: Literal["file", "huggingface", "arxiv"] = "file"
    paper_source_path: Path | None = None  # for the file source; default: the bundled sample
    # Dense similarity in the ranking (README "Ranking quality"): a sentence-transformers model
    # folder, or package:NAME for the model/ folder an installed package ships; "" = off.
    embedding_model: str = ""
    arxiv_query: str = "cat:cs.LG"
    huggingface_url: str = "https://huggingface.co/api/daily_papers"
    huggingface_token: str | None = None  # raises the Hub's rate limit; reads need none
    arxiv_url: str = "https://export.arxiv.org/api/query"
    # Each response of a paper source: at most this many bytes (decoded), arriving within this
    # many seconds; past either, the ingest fails with a clear error instead of eating memory.
    ingest_max_bytes: int = Field(default=20 * 2**20, ge=1024)
    ingest_timeout_seconds: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=100, ge=1, le=5000)
    stale_claim_seconds: int = 120
    # Fault recovery; tests shorten these. The beat entry recover-stale-claims runs every
    # recover_interval_seconds; an issue with open rows and no claim for redispatch_after_seconds
    # (longer than the longest retry backoff) is dispatched again (its tasks were lost).
    recover_interval_seconds: float = Field(default=30.0, gt=0)
    redispatch_after_seconds: int = Field(default=600, ge=1)
    # Rows still to send of an issue older than this are given up (failed, and logged) instead
    # of being retried: a digest that late is news no more, and nothing waits forever.
    deferred_retry_days: int = Field(default=3, ge=1)
    retry_backoff_seconds: int = Field(default=5, ge=1)  # Celery retry_backoff (base, doubling)
    retry_backoff_max_seconds: int = Field(default=300, ge=1)
    # Journey emails (confirm, welcome, already subscribed) are outbox rows. Beat's sweep (every
    # recover_interval_seconds) queues again a row still unsent this long after it was written
    # or last tried (doubling with each try, at most an hour); after journey_max_attempts tries
    # a transient failure ends the row as failed.
    journey_requeue_after_seconds: int = Field(default=60, ge=1)
    journey_max_attempts: int = Field(default=15, ge=1)

    # The web app's guards (README "Security"). Lists are comma-separated in the environment.
    metrics_token: str | None = None  # Bearer token for GET /metrics; none set: /metrics is closed
    admin_tokens: Annotated[list[str], NoDecode] = []  # operators' tokens; each also opens /metrics
    signup_pow_difficulty: int = Field(default=0, ge=0, le=10_000_000)  # proof-of-work size; 0 = off
    thumbnail_hosts: Annotated[list[str], NoDecode] = ["cdn-thumbnails.huggingface.co"]  # view page img-src
    webhook_rate_per_ip: int = Field(default=600, ge=1)  # bounce webhook calls per IP per minute
    # The admin pages (/admin): an argon2 hash from `newsletter admin hash-password`; the admin
    # tokens log in too. Sessions last admin_session_hours; logins per IP per minute are limited.
    admin_password_hash: str | None = None
    admin_session_hours: int = Field(default=8, ge=1, le=24 * 30)
    admin_login_rate_per_ip: int = Field(default=5, ge=1)

    # Mail providers' event webhooks (README "Bounces from a mail provider"): each endpoint
    # answers 404 until its settings are set.
    ses_sns_cert: Path | None = None  # PEM file: the certificate(s) SNS signs with, saved by the operator
    ses_sns_topic_arns: Annotated[list[str], NoDecode] = []  # the SNS topics whose messages count
    mailgun_signing_key: str | None = None  # Mailgun's "HTTP webhook signing key"
    postmark_webhook_user: str | None = None  # basic-auth credentials in Postmark's webhook URL
    postmark_webhook_password: str | None = None
    # A signed provider call (SNS Timestamp, Mailgun timestamp) further than this from our clock
    # is refused; Mailgun tokens are remembered twice as long, so a replay never gets through.
    provider_event_max_age_seconds: int = Field(default=900, ge=30, le=86_400)

    @field_validator(
        "admin_tokens", "thumbnail_hosts", "secret_key_fallbacks", "ses_sns_topic_arns", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    # Bounces after the 250 (README "Bounces and complaints"). VERP envelope senders and the
    # mailto: unsubscribe use this domain (default: the domain of mail_from); tokens older than
    # bounce_token_days are refused. Scoring is Mailman's: hard bounce -> bounced at once (or
    # bounce_hard_weight points); a soft bounce adds bounce_soft_weight, at most one a day; the
    # score halves every bounce_score_half_life_days and restarts after bounce_score_window_days
    # without a bounce; at bounce_score_threshold the reader is bounced.
    bounce_domain: str | None = None
    bounce_token_days: int = Field(default=60, ge=1)
    bounce_hard_immediate: bool = True
    bounce_hard_weight: float = Field(default=2.0, gt=0)
    bounce_soft_weight: float = Field(default=1.0, ge=0)
    bounce_score_threshold: float = Field(default=3.0, gt=0)
    bounce_score_half_life_days: float = Field(default=30.0, gt=0)
    bounce_score_window_days: int = Field(default=60, ge=1)
    inbound_max_bytes: int = Field(default=2 * 2**20, ge=10_000)  # bigger messages: 552
    # Branding (README "Branding and templates"): shown by every email and page. The accent
    # colour is #rgb or #rrggbb; the logo an https:// image (pages admit its origin in their CSP).
    brand_name: str = Field(default="Paper Digest", min_length=1, max_length=80)
    accent_color: str = Field(default="#1a56db", pattern=r"^#(?:[0-9a-fA-F]{3}){1,2}$")
    logo_url: Annotated[str | None, AfterValidator(check_logo_url)] = None
    footer_text: str = Field(default="", max_length=1000)  # plain text; escaped in HTML
    # A folder whose files override the packaged templates of the same relative name.
    templates_dir: Path | None = None

    @field_validator("smtp_starttls")
    @classmethod
    def _one_kind_of_tls(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("smtp_tls"):
            raise ValueError("choose one: NEWSLETTER_SMTP_TLS (port 465) or NEWSLETTER_SMTP_STARTTLS (587)")
        return value

    @field_validator("embedding_model")
    @classmethod
    def _model_folder(cls, value: str) -> str:
        from newsletter.ranking.dense import checked_setting

        try:
            return checked_setting(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("templates_dir")
    @classmethod
    def _existing_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"NEWSLETTER_TEMPLATES_DIR {str(value)!r} is not a folder")
        return value.resolve() if value is not None else None

    # Liveness (`newsletter/liveness.py`): `send --now` pings the workers for this long before it
    # waits on them; workers and beat record a heartbeat every heartbeat_interval_seconds, and
    # the readiness check fails when the newest is older than heartbeat_max_age_seconds.
    worker_ping_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    heartbeat_interval_seconds: float = Field(default=30.0, gt=0)
    heartbeat_max_age_seconds: int = Field(default=180, ge=1)
    # `send --now` pings the workers again when no delivery has moved for this long.
    send_stall_seconds: float = Field(default=30.0, gt=0, le=3600)

    # An issue pauses after this many messages in a row refused for a reason that is not about
    # the reader (a 5xx at MAIL FROM or DATA, policy, size), like listmonk's max_send_errors.
    max_send_errors: int = Field(default=10, ge=1)

    @field_validator("admin_password_hash")
    @classmethod
    def _argon2_hash(cls, value: str | None) -> str | None:
        if value and not value.startswith("$argon2id$"):
            raise ValueError("must be an Argon2id hash: make one with `newsletter admin hash-password`")
        return value or None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from exc
        return value

    @model_validator(mode="after")
    def _dkim_pair(self) -> Settings:  # one without the other: mail went out unsigned, unsaid
        if bool(self.dkim_selector) != bool(self.dkim_private_key_path):
            raise ValueError("NEWSLETTER_DKIM_SELECTOR and NEWSLETTER_DKIM_PRIVATE_KEY_PATH go together")
        return self

    @model_validator(mode="after")
    def _refuse_in_production(self) -> Settings:
        if self.mode != "production":
            return self
        problems = [*self._secret_problems(), *self._identity_problems()]
        if not self.base_url.startswith("https://"):
            # RFC 8058: List-Unsubscribe must carry an https link; mail providers ignore others.
            problems.append("NEWSLETTER_BASE_URL must be an https:// URL in production.")
        if problems:
            raise ConfigError("\n".join(problems))
        return self

    def _secret_problems(self) -> list[str]:
        problems = []
        if _weak_secret(self.secret_key):
            problems.append(
                "NEWSLETTER_SECRET_KEY is missing, the default, or too weak: it needs at least "
                f"{SECRET_MIN_LENGTH} characters, at least {SECRET_MIN_DISTINCT} of them different. "
                f"Make one with: {MAKE_SECRET}  (or set NEWSLETTER_MODE=dev for local experiments)"
            )
        if any(key == DEV_SECRET or len(key) < FALLBACK_MIN_LENGTH for key in self.secret_key_fallbacks):
            problems.append(
                "NEWSLETTER_SECRET_KEY_FALLBACKS holds the default secret or a key shorter than "
                f"{FALLBACK_MIN_LENGTH} characters: anyone could forge links with it. Remove it."
            )
        return problems

    def _identity_problems(self) -> list[str]:
        """Who the mail says it is from: receivers reject or bin mail from a name that cannot
        exist on the Internet, and CAN-SPAM wants a postal address in every footer."""
        problems = []
        address = parseaddr(self.mail_from)[1]
        if "@" not in address:
            problems.append(
                f"NEWSLETTER_MAIL_FROM {self.mail_from!r} holds no address: "
                'write it as "Paper Digest <digest@papers.yourlab.org>".'
            )
        named = {"NEWSLETTER_MAIL_FROM": self.mail_domain if "@" in address else None}
        named["NEWSLETTER_LIST_ID"] = self.list_id.rpartition("<")[2].strip(" >")
        named["NEWSLETTER_DKIM_DOMAIN"] = self.dkim_domain
        named["NEWSLETTER_BOUNCE_DOMAIN"] = self.bounce_domain  # bounces and mailto: unsubscribes
        for name, domain in named.items():
            reason = undeliverable(domain) if domain is not None else None
            if reason:
                problems.append(f"{name} uses {domain!r}, which {reason}: use a domain you own.")
        if not self.postal_address.strip() and not self.postal_address_waived:
            problems.append(
                "NEWSLETTER_POSTAL_ADDRESS is missing: CAN-SPAM wants a physical postal address in "
                "every newsletter (set NEWSLETTER_POSTAL_ADDRESS_WAIVED=true if that law does not bind you)."
            )
        return problems

    @property
    def signing_keys(self) -> list[str]:
        """Every key a link may be signed with, the current one last: itsdangerous signs with the
        last and verifies with each."""
        return [*self.secret_key_fallbacks, self.secret_key]

    @property
    def limits_redis_url(self) -> str | None:
        """Where rate limits are shared: `redis_url`, else a Redis broker, else nowhere."""
        if self.redis_url:
            return self.redis_url
        return self.broker_url if (self.broker_url or "").startswith("redis") else None

    def local_now(self, now: datetime | None = None) -> datetime:
        """`now` (default: the current time; naive means UTC) in the schedule's zone."""
        now = now or datetime.now(UTC)
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(ZoneInfo(self.timezone))

    @property
    def uses_broker(self) -> bool:
        return bool(self.broker_url)

    @property
    def mail_domain(self) -> str:
        return mail_domain(self.mail_from)

    @property
    def verp_domain(self) -> str:
        """Where bounces and mailto: unsubscribes go: `bounce_domain`, else the mail domain."""
        return ascii_domain(self.bounce_domain or self.mail_domain).lower()


def _weak_secret(secret: str) -> bool:
    return secret == DEV_SECRET or len(secret) < SECRET_MIN_LENGTH or len(set(secret)) < SECRET_MIN_DISTINCT


class _ValuesOnly(Settings):
    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls,
        _settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_environment: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def settings_from(**values: Any) -> Settings:
    """Settings from `values` and the defaults only: no environment variable, no settings file.
    For runs that must not touch the operator's configuration (the demo, `newsletter init`)."""
    return _checked(_ValuesOnly, **values)


def _checked(cls: type[Settings], **values: Any) -> Settings:
    """`cls(**values)`, with pydantic's complaints turned into a ConfigError: one line per bad
    setting, naming its NEWSLETTER_* variable and why."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(error) for error in exc.errors())) from None


def _describe(error: Any) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    name = f"NEWSLETTER_{field.upper()}" if field else "the settings"
    shown = "" if not field or any(word in field for word in _SECRET_WORDS) else f" (got {error['input']!r})"
    return f"{name}: {error['msg']}{shown}"


@lru_cache
def get_settings() -> Settings:
    """The settings of this process: environment variables over the settings file over the
    defaults. ConfigError (one line per problem) if the file or a value is wrong."""
    path = find_env_file()
    if path is not None:
        _warn_unknown(path, read_env_file(path))  # refuses an unreadable file, a line not KEY=VALUE
    try:
        return _checked(Settings, _env_file=path)
    except ConfigError as exc:
        if path is not None or "NEWSLETTER_SECRET_KEY " not in str(exc):
            raise
        # Run from another folder, a missing secret often only means its file was not found.
        raise ConfigError(f"{NO_FILE}\n{exc}") from None


def _warn_unknown(path: Path, values: dict[str, str]) -> None:
    """A misspelt setting in the file is ignored like any other unknown line: say so."""
    known = {f"NEWSLETTER_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(k for k in values if k.upper().startswith("NEWSLETTER_") and k.upper() not in known)
    if unknown:
        event(log, "config_unknown_setting", logging.WARNING, path=str(path), names=unknown, hint="a typo?")


def reset_settings() -> None:
    """Forget cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
