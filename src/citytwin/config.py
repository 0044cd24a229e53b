"""One Settings object: where the store is, which city CRS, limits.

Values come from keyword arguments, else ``CITYTWIN_*`` environment variables, else defaults
(argument > settings > embedded default, as everywhere in citytwin).
"""

from __future__ import annotations

import os

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
        (), repr=False, description="Bearer tokens allowed to write (env: comma-separated)"
    )

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from ``CITYTWIN_*`` environment variables, then overrides."""
        env: dict[str, object] = {
            name: os.environ[f"CITYTWIN_{name.upper()}"]
            for name in cls.model_fields
            if f"CITYTWIN_{name.upper()}" in os.environ
        }
        for name in ("api_tokens", "mqtt_ingest_topics"):  # comma-separated lists
            if isinstance(text := env.get(name), str):
                env[name] = tuple(t.strip() for t in text.split(",") if t.strip())
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(env)
