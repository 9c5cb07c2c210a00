"""One settings object, read from the environment and `.env` at start-up and passed in."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path(".steward")


class Settings(BaseSettings):
    """Steward's configuration. Defaults give the embedded setup: a SQLite file and a file broker."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      env_ignore_empty=True)

    slack_bot_token: SecretStr = SecretStr("")
    slack_signing_secret: SecretStr = SecretStr("")
    slack_app_token: SecretStr = SecretStr("")
    slack_api_url: str = "https://slack.com/api/"
    steward_home: Path = Field(default=DEFAULT_HOME, description="Where embedded state lives.")
    database_url: str = ""
    broker_url: str = ""
    steward_policy: Path | None = None
    # Set only by `steward demo`: a file holding the sandbox clock's offset (see workers/clock.py).
    steward_sandbox_clock: Path | None = None
    log_level: str = "INFO"
    # "json" (one object a line, for log collectors) or "text" (for humans at a terminal).
    log_format: str = "json"
    # A 429's Retry-After up to this many seconds is waited out in the process; a longer one surfaces
    # as an error, and the outbox retries the message at Retry-After.
    slack_retry_max_wait_seconds: float = Field(default=5.0, ge=0)
    # In-process retries of one Slack call (connection errors, 429s, 5xx) before its error surfaces.
    slack_max_retries: int = Field(default=2, ge=0, le=10)
    # How long one Slack Web API attempt may take before the client gives up on it.
    slack_timeout_seconds: float = Field(default=15.0, gt=0)
    # How long a worker's claim on an outbox row lasts: longer than the slowest send (every attempt
    # timing out), or a live worker's send could be repeated; shorter means a killed worker's rows
    # are retried sooner. A row the sweep queued is queued again only after as long (its task was lost).
    outbox_claim_seconds: float = Field(default=300.0, ge=10)
    # Redis hands a task a dead worker had taken to another worker after this long. Every task is
    # idempotent (outbox claims, decisions by compare-and-set), so this bounds how long a SIGKILLed
    # worker's click or delivery waits, not whether it runs twice.
    broker_visibility_timeout_seconds: int = Field(default=3600, ge=10)

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, or a SQLite file under STEWARD_HOME."""
        return self.database_url or f"sqlite:///{(self.steward_home / 'steward.db').as_posix()}"

    @property
    def resolved_broker_url(self) -> str:
        """BROKER_URL, or the embedded file broker under STEWARD_HOME."""
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        """Folder the embedded file broker exchanges messages through."""
        return self.steward_home / "broker"

    @property
    def socket_mode(self) -> bool:
        """Socket Mode is used when an app-level token is configured."""
        return bool(self.slack_app_token.get_secret_value())
