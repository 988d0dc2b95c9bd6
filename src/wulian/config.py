"""Settings: environment variables with a `WULIAN_` prefix; CLI flags override them."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the platform can be told at start."""

    model_config = SettingsConfigDict(env_prefix="WULIAN_", extra="ignore")

    data_dir: Path = Path("wulian-data")
    database: str | None = None  # default: sqlite in data_dir; or postgresql://...
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    broker: str = "embedded"  # or mqtt://[user:pass@]host:port of Mosquitto/EMQX/...
    admin_token: str | None = None
    lang: str | None = None
    max_payload_bytes: int = Field(default=256 * 1024, ge=64)
    # any API change (thing models, rules, devices): refused from its headers when larger
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    # GET /metrics without the admin token (for a Prometheus on a private network)
    metrics_public: bool = False
    max_future_skew_s: int = Field(default=300, ge=0)
    online_window_s: int = Field(default=300, ge=1)
    ingest_workers: int = Field(default=0, ge=0)  # 0: one per core for an external broker
    batch_max: int = Field(default=2000, ge=1)
    batch_ms: int = Field(default=50, ge=1)
    session_ttl_s: int = Field(default=8 * 3600, ge=60)  # console login; slides with use
    # e-mail actions of rules; without smtp_host an e-mail delivery fails at once, visibly
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "wulian@localhost"
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None  # SecretStr: kept out of reprs and logs

    @property
    def database_url(self) -> str:
        """The database URL in force (SQLite in the data dir unless told otherwise)."""
        return self.database or f"sqlite:///{(self.data_dir / 'wulian.db').resolve()}"

    @property
    def embedded_broker(self) -> bool:
        return self.broker == "embedded"

    def secret_file(self, name: str) -> Path:
        return self.data_dir / name

    def ensure_secret(self, name: str) -> tuple[str, bool]:
        """A secret kept in the data dir (created on first use); (value, created now)."""
        path = self.secret_file(name)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        try:
            # O_EXCL: of two processes starting on a fresh data dir, exactly one creates it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(50):  # the creator may not have written it yet
                existing = path.read_text().strip()
                if existing:
                    return existing, False
                time.sleep(0.02)
            raise RuntimeError(f"{path} is empty") from None
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
        return value, True
