"""One settings object for the whole bus.

`Settings.from_env()` is the only place the environment is read: one variable per setting,
``PINGAN_<FIELD>`` (``PINGAN_SIP_PORT``, ``PINGAN_REGISTRY_PATH`` …); everything else — the
worker, the receivers, the search server, the CLI (whose options only override a setting
explicitly) — receives a `Settings` instance. The object is frozen; secrets (``person_key_secret``,
``sip_password``, ``search_tokens``, ``alarm110_url``, which may carry a database password,
``audit_key``) stay out of its repr.

Deprecated names still read (each logs a warning; `DEPRECATED_ENV`): ``PINGAN_DEVICE_REGISTRY``
→ ``PINGAN_REGISTRY_PATH`` (the new name wins when both are set).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEZONE = "Asia/Shanghai"
"""Local time of the Chinese sources (no offset in their timestamps): the one default of ``timezone``."""
DEPRECATED_ENV: Mapping[str, str] = {"PINGAN_DEVICE_REGISTRY": "PINGAN_REGISTRY_PATH"}
"""Old variable → the one name in force (still accepted through the field's validation alias)."""


class Settings(BaseSettings):
    """Environment-driven configuration (``PINGAN_<FIELD>``), frozen after construction."""

    model_config = SettingsConfigDict(env_prefix="PINGAN_", frozen=True, extra="ignore", populate_by_name=True)

    # --- where things run -------------------------------------------------
    run_dir: Path = Field(default=PROJECT_ROOT / ".run", description="logs, data and pid files of the local stack")
    # --- Kafka ---------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "512m"
    kafka_manage: bool = Field(default=True, description="False when pointing at an existing cluster")
    topic_prefix: str = ""
    input_topic_prefix: str | None = Field(
        default=None, description="prefix of the raw topics the workers read; None: topic_prefix (pipeline replays "
                                  "read the live raw topics and write under a new topic_prefix)")
    replication_factor: int = 1
    # --- Elasticsearch -------------------------------------------------------
    es_url: str = "http://127.0.0.1:9251"
    # The embedded runner only accepts HTTP ports up to 9299; node 1 listens on base+1.
    es_http_port: int = 9251
    es_transport_port: int = 9351
    es_heap: str = "768m"
    es_manage: bool = True
    es_index_prefix: str = "pingan"
    es_refresh_interval: str = "1s"
    # --- domain ------------------------------------------------------------------
    timezone: str = Field(default=DEFAULT_TIMEZONE, description="IANA zone of the sources' local (offset-less) times")
    person_key_secret: str = Field(default="dev-only-person-key-secret-change-me", repr=False)
    county_code: str = "513221"
    # --- processing -------------------------------------------------------------
    app_id: str = "pingan-bus"
    worker_web_port: int = 6066
    search_port: int = 8080
    receiver_port: int = 8090
    # --- receivers (`pingan connectors run`) ----------------------------------
    sip_port: int = Field(default=5060, description="GB/T 28181 SIP listener port (UDP and TCP)")
    sip_password: str = Field(default="12345678", repr=False, description="SIP digest password of the platform")
    alarm110_url: str | None = Field(default=None, repr=False,
                                     description="SQLAlchemy URL of the 110 desk database; None: no 110 poller")
    # --- search (`pingan search serve`) ----------------------------------------
    search_credentials: Path | None = Field(default=None, description="JSON/TOML file: token → {user, admin_code}")
    search_tokens: str | None = Field(default=None, repr=False,
                                      description="the credentials JSON mapping itself (when no file is given)")
    map_tile_url: str | None = Field(
        default=None, description="XYZ tile URL template of the county's own tile service for the operator page's "
                                  "map (e.g. https://tiles.example.gov.cn/{z}/{x}/{y}.png); None: the offline map "
                                  "(admin areas from the gazetteer, no tiles)")
    map_tile_attribution: str = Field(default="", description="attribution text shown under the map tiles")
    queue_due_soon_h: float = Field(default=12.0, description="operator queue: highlight incidents whose handling "
                                                              "deadline passes within this many hours")
    # --- search audit log (streams/web/audit.py) -------------------------------
    audit_key: str | None = Field(
        default=None, repr=False,
        description="HMAC-SHA256 key of the search audit chain, kept outside the log; None: only a loopback "
                    "(development) server runs, with a generated key under run_dir/secrets and a loud warning")
    audit_anchor_every: int = Field(default=100, description="publish the audit chain head every N records "
                                                             "(and on close) to audit-anchors.v1")
    audit_denied_detail_s: float = Field(default=1.0, description="denied requests: at most one full audit "
                                                                  "record per client address per this many s")
    auth_fail_limit: int = Field(default=10, description="failed-token attempts per client address per window "
                                                         "before 429")
    auth_fail_window_s: float = Field(default=10.0, description="window of auth_fail_limit (seconds)")
    max_lateness_s: int = 6 * 3600
    worker_id: int = Field(default=0, description="several workers on one host need distinct ids (data dir, web port)")
    registry_path: Path | None = Field(
        default=None, validation_alias=AliasChoices("PINGAN_REGISTRY_PATH", "PINGAN_DEVICE_REGISTRY"),
        description="device registry CSV (cameras, door controllers); PINGAN_DEVICE_REGISTRY is a deprecated alias")
    profile_dir: Path | None = Field(
        default=None, description="folder of deployment profiles (<feed>.toml) extending each feed's built-in "
                                  "variants: field aliases, code tables, enum wording (connectors/sources/profile.py)")
    sink_batch_size: int = 500
    sink_chunk_size: int = 500
    counties: str = Field(default="513221", description="comma-separated county codes served (deadline ticks)")
    deadline_check_s: float = 60.0
    correlate_batch_size: int = 200
    correlate_batch_s: float = 0.2
    log_json: bool = Field(default=False, description="workers log one JSON object per line (PINGAN_LOG_JSON=1)")

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Read ``PINGAN_*`` from the environment; explicit overrides win."""
        for old, new in DEPRECATED_ENV.items():
            if old in os.environ:
                logging.getLogger(__name__).warning("%s is deprecated: set %s instead%s", old, new,
                                                    " (it is set and wins)" if new in os.environ else "")
        return cls(**overrides)  # type: ignore[arg-type]

    def as_env(self) -> dict[str, str]:
        """The ``PINGAN_*`` variables that give a subprocess these settings (unset fields left out)."""
        return {f"PINGAN_{key.upper()}": str(value) for key, value in self.model_dump().items() if value is not None}

    def topic(self, name: str) -> str:
        """Full topic name for a catalogue name (applies the optional prefix)."""
        return f"{self.topic_prefix}{name}"

    @property
    def raw_topic_prefix(self) -> str:
        """Prefix of the raw (input) topics: ``input_topic_prefix`` when set, else ``topic_prefix``."""
        return self.topic_prefix if self.input_topic_prefix is None else self.input_topic_prefix

    def input_topic(self, name: str) -> str:
        """Full name of a raw (input) topic (applies ``raw_topic_prefix``)."""
        return f"{self.raw_topic_prefix}{name}"
