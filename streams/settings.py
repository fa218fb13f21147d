"""One settings object for the whole bus.

`Settings.from_env()` is the only place the environment is read: one variable per setting,
``PINGAN_<FIELD>`` (``PINGAN_SIP_PORT``, ``PINGAN_REGISTRY_PATH`` …); everything else — the
worker, the receivers, the search server, the CLI (whose options only override a setting
explicitly) — receives a `Settings` instance. The object is frozen; secrets (``person_key_secret``,
``sip_password``, ``search_tokens``, ``alarm110_url``, which may carry a database password,
``audit_key``, ``kafka_sasl_password``, ``es_password``) stay out of its repr.

Client security: `kafka_client_options()` / `aiokafka_client_options()` / `es_client_options()` are
the keyword arguments every Kafka (kafka-python, aiokafka) and Elasticsearch client is built with
(TLS CA file, SASL SCRAM credentials, HTTP basic auth); all empty with the defaults (plaintext
loopback stack). An inconsistent combination (SASL protocol without mechanism, a mechanism on a
non-SASL protocol, a CA file without TLS, a password without a user) fails validation; SASL
without user or password fails when a Kafka client is built.

Secrets have no default outside development: ``dev_mode`` (``PINGAN_DEV_MODE=1``) fills the
person-key secret and the SIP password with fixed, public development values (`from_env` warns when
it does); without it they stay None and `require_secrets(role)` — called by ``pingan worker run``,
``pingan connectors run`` and ``pingan search serve`` before anything starts — raises
`MissingSecrets` naming every missing ``PINGAN_*`` variable (the receivers also need the ingest
credentials file, ``PINGAN_INGEST_CREDENTIALS``; its format: README "Ingest credentials").

Deprecated names still read (each logs a warning; `DEPRECATED_ENV`): ``PINGAN_DEVICE_REGISTRY``
→ ``PINGAN_REGISTRY_PATH`` (the new name wins when both are set).
"""
from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from pathlib import Path

from typing import Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEZONE = "Asia/Shanghai"
"""Local time of the Chinese sources (no offset in their timestamps): the one default of ``timezone``."""
DEPRECATED_ENV: Mapping[str, str] = {"PINGAN_DEVICE_REGISTRY": "PINGAN_REGISTRY_PATH"}
"""Old variable → the one name in force (still accepted through the field's validation alias)."""
DEV_SECRETS: Mapping[str, str] = {"person_key_secret": "dev-only-person-key-secret-change-me",
                                  "sip_password": "dev-only-sip-password"}
"""The public values ``dev_mode`` fills in for unset secrets (never used outside dev mode)."""
ROLE_SECRETS: Mapping[str, tuple[str, ...]] = {
    "worker": ("person_key_secret",),
    "search": ("person_key_secret",),
    "receivers": ("ingest_credentials",),
    "sip": ("sip_password",),
}
"""What each process role refuses to start without (outside dev mode)."""


class MissingSecrets(ValueError):
    """A process was asked to start outside dev mode without the secrets it needs."""


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
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(default=None, repr=False)
    kafka_ssl_cafile: Path | None = Field(default=None, description="PEM CA bundle of the brokers' TLS listener")
    # --- Elasticsearch -------------------------------------------------------
    es_url: str = "http://127.0.0.1:9251"
    es_username: str | None = None
    es_password: str | None = Field(default=None, repr=False)
    es_ca_certs: Path | None = Field(default=None, description="PEM CA bundle of Elasticsearch's HTTPS")
    # The embedded runner only accepts HTTP ports up to 9299; node 1 listens on base+1.
    es_http_port: int = 9251
    es_transport_port: int = 9351
    es_heap: str = "768m"
    es_manage: bool = True
    es_index_prefix: str = "pingan"
    es_refresh_interval: str = Field(default="250ms", description=(
        "refresh interval of the incident indices: how soon an indexed incident is searchable (the queue, "
        "the search page). Elasticsearch's 1s default alone puts the ack-to-searchable p99 near 2 s on "
        "the reference machine; at 272 events/s, 250ms gave p99 1.17-1.79 s (p50 ~0.7) against 1.67-2.27 s "
        "at 500ms (p50 ~0.9), for ~25 % more Elasticsearch CPU (pingan bench throughput's latency probe, "
        "docs/sizing.md). A bigger node load (a prefecture's index) may want 500ms-1s. Replays turn "
        "refresh off while they bulk-load"))
    # --- domain ------------------------------------------------------------------
    timezone: str = Field(default=DEFAULT_TIMEZONE, description="IANA zone of the sources' local (offset-less) times")
    dev_mode: bool = Field(default=False, description="development/demo only: fixed public secrets fill unset ones "
                                                      "and receivers without ingest credentials accept unsigned pushes")
    person_key_secret: str | None = Field(default=None, repr=False,
                                          description="HMAC key of the person keys; required outside dev mode")
    county_code: str = "513221"
    # --- processing -------------------------------------------------------------
    app_id: str = "pingan-bus"
    worker_web_port: int = 6066
    search_port: int = 8080
    receiver_port: int = 8090
    # --- receivers (`pingan connectors run`) ----------------------------------
    sip_port: int = Field(default=5060, description="GB/T 28181 SIP listener port (UDP and TCP)")
    sip_password: str | None = Field(default=None, repr=False,
                                     description="SIP digest password of the platform; required outside dev mode")
    ingest_credentials: Path | None = Field(
        default=None, description="TOML/JSON file of the receivers' per-source credentials (HMAC keys, tokens, "
                                  "ISAPI digest users); required outside dev mode (README: Ingest credentials)")
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
    worker_fetch_max_wait_ms: int = Field(default=100, ge=0, le=30000, description=(
        "how long the broker may hold a worker's fetch when no record is ready (Faust's own 1,500 ms held "
        "a correlate-only worker's read_committed fetch with records waiting: docs/sizing.md §8)"))
    worker_fetch_min_bytes: int = Field(default=16384, ge=1, le=16 * 1024 * 1024, description=(
        "how many bytes the broker gathers for a worker's fetch before it answers (within "
        "worker_fetch_max_wait_ms). aiokafka's 1 answers as soon as any record is there: at 200 "
        "events/s the edge worker then spent ~15% of its time sending fetches that came back with a "
        "record or two, and 16 KiB cut its CPU by a third (docs/sizing.md, ninth session)"))
    gc_threshold0: int = Field(default=50000, ge=0, description=(
        "CPython's gen-0 collection threshold in the worker (and the benchmarks' baselines); 0 keeps "
        "Python's defaults. streams/worker/runtime.py says why"))
    worker_role: Literal["all", "correlate", "edge"] = Field(default="all", description=(
        "the agents this worker runs: all; correlate (the county-serial stage, with the tables); edge "
        "(normalize + index, the stages that spread over partitions). Every role joins the one consumer group "
        "(Faust assigns each member only the topics its agents read), so roles can be mixed and changed "
        "without moving offsets (docs/sizing.md §9)"))
    registry_path: Path | None = Field(
        default=None, validation_alias=AliasChoices("PINGAN_REGISTRY_PATH", "PINGAN_DEVICE_REGISTRY"),
        description="device registry CSV (cameras, door controllers); PINGAN_DEVICE_REGISTRY is a deprecated alias")
    watchlist_path: Path | None = Field(
        default=None, description="watch-list TOML ([[list]] name, plates, id_numbers, phones; README: Watch lists): "
                                  "an event with a listed plate, ID number or phone opens an incident")
    profile_dir: Path | None = Field(
        default=None, description="folder of deployment profiles (<feed>.toml) extending each feed's built-in "
                                  "variants: field aliases, code tables, enum wording (connectors/sources/profile.py)")
    rules_dir: Path | None = Field(
        default=None, description="folder of the deployment's rule files (correlation_rules.toml, tier_rules.toml); "
                                  "a file absent there is the built-in one (streams/domain/ruleset.py)")
    sink_batch_size: int = 500
    sink_chunk_size: int = 500
    counties: str = Field(default="513221", description="comma-separated county codes served (deadline ticks)")
    deadline_check_s: float = Field(default=60.0, description="clock tick interval (seconds)")
    clock_ticks: bool = Field(default=True, description=(
        "tick the county clock from wall time (clock.v1) so quiet counties' deadlines pass; off for "
        "replays and for simulated feeds whose days are in the past (their clock is event time)"))
    clock_grace_s: float = Field(default=300.0, description="a tick is wall time minus this grace")
    worker_compression_type: Literal["gzip", "none"] = Field(default="gzip", description=(
        "compression of the worker's produce requests (outputs and table changelogs). An incident record "
        "carries every member event id and its changelog copy is JSON: a flood of ~10,000 events makes "
        "records near Kafka's 1 MiB message.max.bytes, which the broker checks after compression "
        "(about 6x on such records); gzip needs no extra package in any client"))
    worker_gzip_level: int = Field(default=1, ge=1, le=9, description=(
        "gzip level of the worker's producers (aiokafka alone always uses 9, ~8x the CPU of 1 for a few "
        "per cent of size; streams/worker/codec.py)"))
    worker_max_request_size: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024, description=(
        "largest uncompressed record the worker's producers accept (the broker limit applies compressed)"))
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(default="exactly_once", description=(
        "exactly_once: each correlate batch commits its table changes, outputs and consumed offsets in one "
        "Kafka transaction (a killed worker leaves all of a batch or none), and the worker reads committed "
        "records only; at_least_once: separate writes, a commit barrier over every send (docs/faults.md)"))
    checkpoint_retry_backoff_ms: int = Field(default=10, ge=1, le=1000, description=(
        "exactly_once: how long a checkpoint's transactional producer waits before retrying a request. The "
        "broker writes a committed transaction's markers after it answers the commit, so the next "
        "checkpoint's AddOffsetsToTxn is often answered CONCURRENT_TRANSACTIONS for a few milliseconds; "
        "at aiokafka's default of 100 ms, up to one checkpoint in six took ~120 ms instead of ~30 ms"))
    table_store_wal: bool = Field(default=False, description=(
        "write RocksDB's write-ahead log for the worker's table stores. Off by default, as Kafka Streams "
        "does: a table's changelog topic is its log, and a store that lost its last writes in a crash "
        "(values and the persisted changelog offset together) is restored from the changelog; off, a "
        "5 kB write costs ~8 us instead of ~25 us. On: a restart after a crash restores less"))
    worker_session_timeout_s: float = Field(default=10.0, description=(
        "consumer-group session timeout of the workers: a killed worker's partitions move after this long "
        "(the broker's group.min.session.timeout.ms, 6 s by default, is the floor)"))
    worker_static_membership: bool = Field(default=False, description=(
        "join the consumer group as a static member (group.instance.id <app_id>-worker-<worker_id>): a "
        "restarted worker takes its partitions back at once, without a rebalance; a worker that stops "
        "keeps them until the session timeout"))
    normalize_batch_size: int = Field(default=500, description=(
        "normalize agent: at most this many raw records per batch (their outputs are sent together)"))
    normalize_batch_s: float = Field(default=0.02, description=(
        "normalize agent: a batch is taken when full or after this many seconds, whatever is buffered"))
    correlate_batch_size: int = Field(default=500, description=(
        "correlate agent: at most this many by-county records per batch (state and outputs are "
        "written once per batch)"))
    correlate_batch_s: float = Field(default=0.05, description=(
        "correlate agent: a batch is taken when full or after this many seconds, whatever is buffered "
        "(short: at low rates nothing waits for a batch that never fills)"))
    index_batch_s: float = Field(default=0.05, description=(
        "index agent: a batch of incident records (at most sink_batch_size) is flushed to Elasticsearch "
        "when full or after this many seconds"))
    log_json: bool = Field(default=False, description="workers log one JSON object per line (PINGAN_LOG_JSON=1)")

    @model_validator(mode="after")
    def _client_security_is_consistent(self) -> "Settings":
        sasl = self.kafka_security_protocol.startswith("SASL_")
        problems = [msg for bad, msg in (
            (sasl and not self.kafka_sasl_mechanism, f"{self.kafka_security_protocol} needs kafka_sasl_mechanism"),
            (bool(self.kafka_sasl_password) and not self.kafka_sasl_username,
             "kafka_sasl_password needs kafka_sasl_username"),
            (not sasl and self.kafka_sasl_mechanism is not None,
             f"kafka_sasl_mechanism needs a SASL_* kafka_security_protocol, not {self.kafka_security_protocol}"),
            (self.kafka_ssl_cafile is not None and not self.kafka_security_protocol.endswith("SSL"),
             "kafka_ssl_cafile needs kafka_security_protocol SSL or SASL_SSL"),
            (bool(self.es_password) != bool(self.es_username), "es_username and es_password go together"),
        ) if bad]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def kafka_client_options(self) -> dict[str, Any]:
        """Security keyword arguments of kafka-python clients (producer, consumer, admin); {} for PLAINTEXT.
        Raises ValueError when a SASL protocol lacks the user or the password (each pod sets its own,
        so they are checked where a Kafka client is built, not for every Settings)."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return {}
        opts: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            if not (self.kafka_sasl_username and self.kafka_sasl_password):
                raise ValueError(f"{self.kafka_security_protocol} with {self.kafka_sasl_mechanism} needs "
                                 "PINGAN_KAFKA_SASL_USERNAME and PINGAN_KAFKA_SASL_PASSWORD")
            opts.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                        sasl_plain_password=self.kafka_sasl_password)
        if self.kafka_ssl_cafile is not None:
            opts["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return opts

    def aiokafka_client_options(self) -> dict[str, Any]:
        """The same for aiokafka clients (TLS as an ``ssl_context`` verifying against the CA file)."""
        opts = self.kafka_client_options()
        cafile = opts.pop("ssl_cafile", None)
        if self.kafka_security_protocol.endswith("SSL"):
            opts["ssl_context"] = ssl.create_default_context(cafile=cafile)
        return opts

    def es_client_options(self) -> dict[str, Any]:
        """Keyword arguments of the Elasticsearch clients: basic auth and the CA bundle; {} when unset."""
        opts: dict[str, Any] = {}
        if self.es_username:
            opts["http_auth"] = (self.es_username, self.es_password)
        if self.es_ca_certs is not None:
            opts["ca_certs"] = str(self.es_ca_certs)
        return opts

    @model_validator(mode="before")
    @classmethod
    def _dev_secrets(cls, data: object) -> object:
        """Dev mode only: unset secrets take their public development values (`DEV_SECRETS`)."""
        if isinstance(data, dict) and str(data.get("dev_mode", "")).lower() in ("1", "true", "yes", "on"):
            for name, value in DEV_SECRETS.items():
                if data.get(name) is None:
                    data = {**data, name: value}
        return data

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Read ``PINGAN_*`` from the environment; explicit overrides win."""
        for old, new in DEPRECATED_ENV.items():
            if old in os.environ:
                logging.getLogger(__name__).warning("%s is deprecated: set %s instead%s", old, new,
                                                    " (it is set and wins)" if new in os.environ else "")
        settings = cls(**overrides)  # type: ignore[arg-type]
        if settings.dev_mode:
            public = [n for n, v in DEV_SECRETS.items() if getattr(settings, n) == v]
            logging.getLogger(__name__).warning(
                "PINGAN_DEV_MODE is on: development only%s",
                f"; public development values are used for {', '.join(public)}" if public else "")
        return settings

    def missing_secrets(self, *roles: str) -> list[str]:
        """The ``PINGAN_*`` variables `roles` need that are unset ([] in dev mode: its values fill in)."""
        if self.dev_mode:
            return []
        names = dict.fromkeys(n for role in roles for n in ROLE_SECRETS[role])
        return [f"PINGAN_{n.upper()}" for n in names if getattr(self, n) is None]

    def require_secrets(self, *roles: str) -> "Settings":
        """Self, or `MissingSecrets` naming every secret the roles need and lack (see module docstring)."""
        missing = self.missing_secrets(*roles)
        if missing:
            raise MissingSecrets(f"refusing to start {'/'.join(roles)} without {', '.join(missing)} "
                                 "(set them, or PINGAN_DEV_MODE=1 for development only)")
        return self

    def person_key(self) -> bytes:
        """The person-key HMAC secret as bytes; `MissingSecrets` when it is unset."""
        if self.person_key_secret is None:
            raise MissingSecrets("PINGAN_PERSON_KEY_SECRET is not set (PINGAN_DEV_MODE=1 for development only)")
        return self.person_key_secret.encode("utf-8")

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
