"""One Settings object: where the store is, which city CRS, limits.

Values come from keyword arguments, else ``CITYTWIN_*`` environment variables, else defaults
(argument > settings > embedded default, as everywhere in citytwin).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_STORE_URL = "duckdb:///citytwin.duckdb"


class Settings(BaseModel):
    """Runtime settings of a citytwin process."""

    model_config = ConfigDict(frozen=True)

    store_url: str = Field(DEFAULT_STORE_URL, description="Store URL, e.g. duckdb:///city.duckdb")
    city_crs: str = Field("EPSG:5186", description="Metric CRS for storage and computation")
    max_input_bytes: int = Field(
        8 * 1024**3, gt=0, description="Largest input file ingest accepts (bytes)"
    )

    mqtt_url: str | None = Field(
        None,
        description="MQTT broker (mqtt://host:port) for the SensorThings MQTT extension; "
        "None serves HTTP only",
    )
    mqtt_ingest_topics: tuple[str, ...] = Field(
        (),
        description="Topic filters the server itself ingests device readings from (the durable "
        "subscriber of `citytwin ingest mqtt`, in-process; env: comma-separated)",
    )
    mqtt_create: bool = Field(
        False,
        description="Let MQTT clients create Observations by publishing (the broker's ACL is then "
        "the only access control: MQTT carries no bearer token)",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="The server's public root URL, for links in messages sent without a request "
        "(MQTT notifications)",
    )
    api_tokens: tuple[str, ...] = Field(
        (),
        repr=False,
        description="API keys: TOKEN (admin), TOKEN=admin|operator|public, "
        "TOKEN=writer:DEPARTMENT, each optionally @NAME (env: comma-separated); see "
        "citytwin.auth",
    )
    api_keys_file: str | None = Field(
        None,
        description="YAML list of keys {token | token_sha256, role, department?, name?}, "
        "so that keys can be kept as hashes only",
    )
    feed_departments: tuple[str, ...] = Field(
        (),
        description="feed=department pairs: which department owns the Things of a feed "
        "(env: comma-separated)",
    )
    control_file: str | None = Field(
        None,
        description="Control file (YAML: actuators and rules, see citytwin.control.config); "
        "None runs no control loop",
    )
    audit_log: str | None = Field(
        None,
        description="Audit log (JSON Lines); None: next to the store file (name.audit.jsonl), "
        "ephemeral for an in-memory store, else ./audit.jsonl",
    )

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from ``CITYTWIN_*`` environment variables, then overrides."""
        env: dict[str, object] = {
            name: os.environ[f"CITYTWIN_{name.upper()}"]
            for name in cls.model_fields
            if f"CITYTWIN_{name.upper()}" in os.environ
        }
        for name in (
            "api_tokens",
            "mqtt_ingest_topics",
            "feed_departments",
        ):  # comma-separated lists
            if isinstance(text := env.get(name), str):
                env[name] = tuple(t.strip() for t in text.split(",") if t.strip())
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(env)


def audit_log_path(settings: Settings) -> Path:
    """Where the audit log is: ``settings.audit_log``, else derived from the store URL.

    ``duckdb:///dir/name.duckdb`` → ``dir/name.audit.jsonl``; an in-memory store (``memory://``,
    ``duckdb://``) → a file in a fresh temporary folder (as ephemeral as the store); anything else
    → ``audit.jsonl`` in the working folder.

    >>> audit_log_path(Settings(store_url="duckdb:///data/city.duckdb")).as_posix()
    'data/city.audit.jsonl'
    """
    if settings.audit_log:
        return Path(settings.audit_log)
    url = urlparse(settings.store_url)
    path = url.netloc + url.path[1:] if url.path.startswith("/") else url.path
    if url.scheme == "memory" or (url.scheme == "duckdb" and path in ("", ":memory:")):
        return Path(tempfile.mkdtemp(prefix="citytwin-audit-")) / "audit.jsonl"
    if url.scheme == "duckdb":
        store_file = Path(path)
        return store_file.with_name(f"{store_file.stem}.audit.jsonl")
    return Path("audit.jsonl")


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs (a store or broker URL).

    >>> redact("postgresql://city:secret@db.example:5432/twin")
    'postgresql://city:***@db.example:5432/twin'
    """
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return urlunparse(parsed._replace(netloc=netloc))
