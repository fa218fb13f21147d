"""Kafka producer for the connectors: idempotent, acks=all, Avro-encoding, dead-letter aware.

Contract
--------
* ``RecordProducer`` starts lazily: ``send*`` calls ``ensure_started()``; when the broker cannot be
  reached it raises :class:`DeliveryError` with ``retriable=True`` (the caller spools/retries).
* ``send``/``send_batch`` return only after Kafka acknowledged every record (acks=all,
  idempotent producer). Failures raise :class:`DeliveryError`: ``retriable`` tells the caller
  whether waiting helps (broker away, timeout, leader change) or the record itself is bad
  (too large, invalid topic) and belongs in the dead-letter topic. ``failures`` lists
  ``(index, exception)`` per failed item of a batch.
* Keys are UTF-8 strings (``str`` is encoded, ``bytes`` passed through).
* ``send_dead_letter(record)`` Avro-encodes a ``pingan.DeadLetter`` dict and publishes it to the
  dead-letter topic keyed by its ``source``.
* One failed send never poisons the sends after it: when a batch meets an error Kafka does not
  retry (a record refused for good, or an idempotence error such as ``OutOfOrderSequenceNumber``)
  the underlying producer is replaced (``reset``: a new producer id, sequences from 0), once per
  producer however many concurrent sends saw it fail, and the records that failed only because of
  the producer's state are sent again (``ProducerConfig.state_retries`` times). Those still failing
  are reported as retriable (:class:`ProducerStateError`: the caller spools them); only the records
  themselves refused stay non-retriable failures (dead-letter them).
* A send never outlives its producer: when the producer it was handed to is replaced or stopped
  while the send waits (aiokafka's ``send`` can wait for topic metadata forever once its client is
  closed), the records that producer did not confirm by then fail as :class:`ProducerReset` (a
  producer-session error, so they are re-sent on the new producer like the others).
* Schema store guard: a producer built by ``from_settings`` (on a real Kafka client) makes sure, once, before its first send,
  that every current schema it may write is published on ``schemas.v1``
  (``connectors.ingest.schema_topic.ensure_published``: publishing what is missing); when that
  fails it refuses to send — ``DeliveryError(retriable=True)``, so a receiver spools — and tries
  again on the next send. ``schema_guard=None`` (the constructor's default) skips the check.
* ``discover_limits(topics)`` reads the broker's ``message.max.bytes`` and each topic's
  ``max.message.bytes`` (admin describe_configs) into a ``connectors.ingest.limits.SizeLimits``.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, ProducerClosed

from connectors.ingest.limits import SizeLimits, default_limits, limits_from_configs
from connectors.ingest.schema_topic import ensure_published
from schemas.deadletter import make_dead_letter, truncate_raw
from schemas.serde import SchemaStore, default_store

if TYPE_CHECKING:  # pragma: no cover
    from aiokafka.structs import RecordMetadata

    from streams.settings import Settings

log = logging.getLogger(__name__)

DEADLETTER_TOPIC = "deadletters.v1"
DEADLETTER_SCHEMA = "pingan.DeadLetter"
#: most of a raw body a truncated dead letter keeps (the whole body is kept elsewhere, by reference)
DEAD_LETTER_HEAD_BYTES = 64 * 1024

#: (topic, key, value) as handed to Kafka.
Item = tuple[str, "bytes | None", bytes]


class DeliveryError(Exception):
    """Kafka did not confirm delivery. ``retriable``: True when waiting/retrying can help."""

    def __init__(self, message: str, *, retriable: bool, failures: Sequence[tuple[int, BaseException]] = ()) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.failures = list(failures)


#: errors of the idempotent producer's session, not of the record: the record is innocent
PRODUCER_STATE_ERRORS = frozenset({
    "OutOfOrderSequenceNumber", "OutOfOrderSequenceNumberError", "UnknownProducerId", "UnknownProducerIdError",
    "InvalidProducerEpoch", "InvalidProducerEpochError", "ProducerFenced", "ProducerFencedError",
    "InvalidProducerIdMapping", "InvalidProducerIdMappingError", "InvalidTxnState", "IllegalStateError",
    "ProducerReset",
})


class ProducerReset(Exception):
    """The producer a record was handed to was replaced or stopped before Kafka confirmed the record."""


class ProducerStateError(Exception):
    """A record kept failing with producer-session errors after resets (retriable: spool it)."""

    retriable = True


def is_producer_state_error(exc: BaseException) -> bool:
    """True when ``exc`` is about the producer's idempotence session, not about the record."""
    return any(cls.__name__ in PRODUCER_STATE_ERRORS for cls in type(exc).__mro__)


def is_retriable(exc: BaseException) -> bool:
    """True for errors an outage explains (timeouts, connection loss, retriable broker errors)."""
    if isinstance(exc, DeliveryError):
        return exc.retriable
    if isinstance(exc, ProducerStateError):
        return True
    if isinstance(exc, (asyncio.TimeoutError, KafkaTimeoutError, KafkaConnectionError, ProducerClosed, OSError)):
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    return False


def _retrieve(task: "asyncio.Future[Any]") -> None:
    """Mark a finished send task's outcome as seen (its caller may have stopped waiting)."""
    if not task.cancelled():
        task.exception()


def encode_key(key: str | bytes | None) -> bytes | None:
    """Kafka key bytes: UTF-8 for ``str``."""
    if key is None or isinstance(key, bytes):
        return key
    return key.encode("utf-8")


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """Tuning of the underlying aiokafka producer."""

    client_id: str = "pingan-connector"
    linger_ms: int = 5
    request_timeout_ms: int = 30_000
    retry_backoff_ms: int = 200
    max_batch_size: int = 256 * 1024
    max_request_size: int = 4 * 1024 * 1024
    compression_type: str | None = None
    start_timeout_s: float = 10.0
    state_retries: int = 2  # re-sends of records failed by a producer-session error, each after a reset


class RecordProducer:
    """aiokafka producer wrapper (acks=all, idempotent) with Avro encoding and dead letters."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        config: ProducerConfig | None = None,
        deadletter_topic: str = DEADLETTER_TOPIC,
        store: "SchemaStore | None" = None,
        producer_factory: Callable[..., Any] | None = None,
        security: Mapping[str, Any] | None = None,
        schema_guard: Callable[["SchemaStore"], object] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = dict(security or {})  # aiokafka TLS/SASL options (Settings.aiokafka_client_options)
        self.config = config or ProducerConfig()
        self.deadletter_topic = deadletter_topic
        self._store = store
        self._factory = producer_factory or AIOKafkaProducer
        self._producer: Any | None = None
        self._stuck: "asyncio.Future[Any] | None" = None  # a send whose caller gave up waiting
        self._gone: dict[int, asyncio.Event] = {}  # generation → set once that producer is stopped
        self._start_lock: asyncio.Lock | None = None
        self._closed = False
        self.generation = 0  # bumped for every underlying producer created
        self.limits: SizeLimits = default_limits(self.config.max_request_size)  # see discover_limits
        self.resets = 0  # resets after a failed send (observability, tests)
        self._schema_guard = schema_guard
        self._schemas_ok = schema_guard is None

    @classmethod
    def from_settings(cls, settings: "Settings", **kwargs: Any) -> "RecordProducer":
        """Producer for ``settings.kafka_bootstrap`` writing dead letters to the prefixed topic."""
        kwargs.setdefault("deadletter_topic", settings.topic(DEADLETTER_TOPIC))
        kwargs.setdefault("security", settings.aiokafka_client_options())
        if kwargs.get("producer_factory") is None:  # a fake transport has no schema topic to check
            kwargs.setdefault("schema_guard", functools.partial(ensure_published, settings))
        return cls(settings.kafka_bootstrap, **kwargs)

    # ------------------------------------------------------------------ lifecycle
    @property
    def store(self) -> "SchemaStore":
        """The schema store (``schemas.serde.default_store()`` unless one was given)."""
        if self._store is None:
            self._store = default_store()
        return self._store

    @property
    def started(self) -> bool:
        """True while an underlying producer is connected."""
        return self._producer is not None

    async def start(self) -> None:
        """Connect; raises ``DeliveryError(retriable=True)`` when the broker is unreachable."""
        await self.ensure_started()

    async def ensure_started(self) -> Any:
        """The connected aiokafka producer, creating it on first use or after a failed start."""
        if self._closed:
            raise DeliveryError("producer is stopped", retriable=False)
        if self._producer is not None:
            return self._producer
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._producer is not None:
                return self._producer
            cfg = self.config
            producer = self._factory(
                bootstrap_servers=self.bootstrap_servers,
                client_id=cfg.client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=cfg.linger_ms,
                request_timeout_ms=cfg.request_timeout_ms,
                retry_backoff_ms=cfg.retry_backoff_ms,
                max_batch_size=cfg.max_batch_size,
                max_request_size=cfg.max_request_size,
                compression_type=cfg.compression_type,
                **self.security,
            )
            try:
                await asyncio.wait_for(producer.start(), timeout=cfg.start_timeout_s)
            except BaseException as exc:
                try:
                    await asyncio.wait_for(producer.stop(), timeout=5)
                except Exception:  # noqa: BLE001 - the start failure is what we report
                    log.debug("stop after failed start raised", exc_info=True)
                if isinstance(exc, Exception):
                    raise DeliveryError(
                        f"cannot connect to Kafka at {self.bootstrap_servers}: {type(exc).__name__}: {exc}",
                        retriable=is_retriable(exc),
                    ) from exc
                raise
            if not self._schemas_ok:
                try:
                    await asyncio.to_thread(self._schema_guard, self.store)  # type: ignore[arg-type]
                except Exception as exc:  # noqa: BLE001 - refused with its reason; retried on the next send
                    try:
                        await asyncio.wait_for(producer.stop(), timeout=5)
                    except Exception:  # noqa: BLE001 - the refusal is what we report
                        log.debug("stop after the schema check raised", exc_info=True)
                    raise DeliveryError(f"{type(exc).__name__}: {exc}", retriable=True) from exc
                self._schemas_ok = True
            self._producer = producer
            self.generation += 1
            self._gone[self.generation] = asyncio.Event()
            return producer

    async def flush(self) -> None:
        """Wait until everything handed to the producer is acknowledged or failed."""
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        """Flush and close (idempotent)."""
        self._closed = True
        producer, self._producer = self._producer, None
        generation = self.generation
        if producer is not None:
            try:
                await producer.stop()
            finally:
                self._retire(generation)

    async def reset(self) -> None:
        """Drop the current connection (after repeated timeouts); the next send reconnects."""
        producer, self._producer = self._producer, None
        generation = self.generation  # a send may start the next producer while this one stops
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=5)
            except Exception:  # noqa: BLE001 - we are discarding it anyway
                log.debug("stop of discarded producer raised", exc_info=True)
            finally:
                self._retire(generation)

    def _retire(self, generation: int) -> None:
        """Wake the sends still waiting on the producer of ``generation``: it is stopped."""
        gone = self._gone.pop(generation, None)
        if gone is not None:
            gone.set()

    async def reset_generation(self, generation: int, reason: BaseException) -> None:
        """``reset()`` unless the producer of ``generation`` was already replaced (concurrent senders
        that saw the same failure reset it once)."""
        if self._producer is None or self.generation != generation:
            return
        self.resets += 1
        log.warning("resetting the Kafka producer after %s: %s", type(reason).__name__, reason)
        await self.reset()

    async def discover_limits(self, topics: Sequence[str], *, timeout: float = 10.0) -> SizeLimits:
        """The broker's record size limits for ``topics`` (``message.max.bytes`` of a broker,
        ``max.message.bytes`` of each existing topic), capped by ``max_request_size``.
        Raises ``DeliveryError(retriable=True)`` when Kafka cannot be asked."""
        def describe() -> SizeLimits:
            from kafka import KafkaAdminClient
            from kafka.admin import ConfigResource, ConfigResourceType

            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=f"{self.config.client_id}-limits",
                                     request_timeout_ms=int(timeout * 1000))
            try:
                brokers = admin.describe_cluster()["brokers"]
                broker_id = str(brokers[0]["broker_id"])
                res = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, broker_id,
                                                             {"message.max.bytes": None})], config_filter="all")
                broker_max = _int_config(res.get("broker", {}).get(broker_id, {}), "message.max.bytes")
                existing = set(admin.list_topics())
                wanted = [t for t in dict.fromkeys(topics) if t in existing]
                per_topic: dict[str, int | None] = {}
                if wanted:
                    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t, {"max.message.bytes": None})
                                                  for t in wanted], config_filter="all")
                    for t in wanted:
                        per_topic[t] = _int_config(res.get("topic", {}).get(t, {}), "max.message.bytes")
                return limits_from_configs(broker_max, per_topic, self.config.max_request_size)
            finally:
                admin.close()

        try:
            return await asyncio.wait_for(asyncio.to_thread(describe), timeout=timeout + 5)
        except Exception as exc:  # noqa: BLE001 - reported as a retriable DeliveryError
            raise DeliveryError(f"cannot describe Kafka's size limits: {type(exc).__name__}: {exc}",
                                retriable=True) from exc

    # ------------------------------------------------------------------ encode
    def encode(self, schema: str, record: Mapping[str, Any]) -> bytes:
        """Avro single-object encoding of ``record`` with the current ``schema``."""
        return self.store.encode(schema, record)

    def dead_letter_fits(self, record: Mapping[str, Any]) -> bool:
        """True when the DeadLetter dict, encoded whole, is within the dead-letter topic's limit."""
        key = encode_key(str(record["source"]))
        return self.limits.fits(self.deadletter_topic, key, self.encode(DEADLETTER_SCHEMA, record))

    def dead_letter_item(self, record: Mapping[str, Any], *, ref: str | None = None) -> Item:
        """(topic, key, value) of a DeadLetter dict, for sending or spooling. A record too large for
        the dead-letter topic (``self.limits``) keeps only the head of its raw (at most
        ``DEAD_LETTER_HEAD_BYTES``), with the whole body's size and sha256 and ``ref`` (where the
        caller kept the whole body; None: nowhere) in its reason (``schemas.deadletter.truncate_raw``)."""
        topic, key = self.deadletter_topic, encode_key(str(record["source"]))
        value = self.encode(DEADLETTER_SCHEMA, record)
        if self.limits.fits(topic, key, value):
            return (topic, key, value)
        envelope = len(self.encode(DEADLETTER_SCHEMA, truncate_raw(record, keep=0, ref=ref)))
        keep = min(DEAD_LETTER_HEAD_BYTES, max(0, self.limits.value_budget(topic, key, envelope) - 16))
        return (topic, key, self.encode(DEADLETTER_SCHEMA, truncate_raw(record, keep=keep, ref=ref)))

    # ------------------------------------------------------------------ send
    async def send(self, topic: str, key: str | bytes | None, value: bytes, *, timeout: float | None = None) -> "RecordMetadata":
        """Send one record and await Kafka's acknowledgement (``DeliveryError`` otherwise)."""
        return (await self.send_batch([(topic, encode_key(key), value)], timeout=timeout))[0]

    async def send_batch(self, items: Sequence[Item], *, timeout: float | None = None) -> list["RecordMetadata"]:
        """Hand all items to the producer in order, then await every acknowledgement.

        Raises ``DeliveryError`` listing each failed item; ``retriable`` is True if any failure is
        retriable (the whole batch should be retried later)."""
        if not items:
            return []
        stuck = self._stuck
        if stuck is not None and not stuck.done():
            # records handed over earlier are still queued in the client and will be sent when Kafka
            # answers; queueing more now would only multiply duplicates (the caller spools instead)
            raise DeliveryError("Kafka has not confirmed earlier records yet", retriable=True)
        task = asyncio.ensure_future(self._send_batch(items))
        task.add_done_callback(_retrieve)
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=timeout)
        except asyncio.TimeoutError as exc:
            self._stuck = task
            raise DeliveryError(f"Kafka did not confirm {len(items)} record(s) within {timeout}s", retriable=True) from exc

    async def _send_once(self, items: Sequence[Item]) -> list[Any]:
        """Hand ``items`` to the current producer; each one's metadata or exception. A batch that met
        an error Kafka does not retry resets that producer (it may be poisoned for what follows).
        When that producer is stopped first (another send reset it), what it has not confirmed by
        then is a :class:`ProducerReset` failure instead of a wait that may never end."""
        producer = await self.ensure_started()
        generation = self.generation
        gone = self._gone.get(generation)
        futures: list[asyncio.Future[Any]] = []

        async def hand_over() -> None:
            for topic, key, value in items:
                try:
                    futures.append(await producer.send(topic, value=value, key=encode_key(key)))
                except Exception as exc:  # noqa: BLE001 - collected and raised as DeliveryError below
                    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                    fut.set_exception(exc)
                    futures.append(fut)
            await asyncio.wait(futures)

        task = asyncio.ensure_future(hand_over())
        watch = asyncio.ensure_future(gone.wait()) if gone is not None else None
        try:
            await asyncio.wait([task] if watch is None else [task, watch], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if watch is not None:
                watch.cancel()
            if not task.done():  # the producer is stopped (or we are cancelled): stop waiting on it
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        results: list[Any] = []
        for i in range(len(items)):
            fut = futures[i] if i < len(futures) else None
            if fut is None or not fut.done() or fut.cancelled():
                results.append(ProducerReset(f"producer {generation} was stopped before Kafka confirmed the record"))
            else:
                results.append(fut.exception() or fut.result())
        fatal = next((r for r in results if isinstance(r, BaseException)
                      and (is_producer_state_error(r) or not is_retriable(r))), None)
        if fatal is not None:
            await self.reset_generation(generation, fatal)
        return results

    async def _send_batch(self, items: Sequence[Item]) -> list["RecordMetadata"]:
        results = await self._send_once(items)
        for _ in range(self.config.state_retries):
            innocent = [i for i, r in enumerate(results) if isinstance(r, BaseException) and is_producer_state_error(r)]
            if not innocent:
                break
            log.warning("re-sending %d record(s) failed by the producer's state (%s)", len(innocent),
                        type(results[innocent[0]]).__name__)
            again = await self._send_once([items[i] for i in innocent])
            for i, res in zip(innocent, again):
                results[i] = res
        out: list[Any] = []
        failures: list[tuple[int, BaseException]] = []
        for i, res in enumerate(results):
            if isinstance(res, BaseException):
                if is_producer_state_error(res):
                    res = ProducerStateError(f"{type(res).__name__}: {res} (after {self.config.state_retries} "
                                             "reset(s))")
                failures.append((i, res))
            out.append(res)
        if failures:
            retriable = any(is_retriable(e) for _, e in failures)
            first = failures[0][1]
            raise DeliveryError(
                f"{len(failures)} of {len(items)} record(s) not delivered: {type(first).__name__}: {first}",
                retriable=retriable,
                failures=failures,
            )
        return out

    async def deliver(self, items: Sequence[Item], *, source: str, at_ms: int, timeout: float | None = None) -> int:
        """Send ``items``; records Kafka refuses for good (too large, invalid topic…) are replaced by
        dead letters (stage "receive", raw = the encoded value) so the caller can move on.

        Returns how many items became dead letters. Raises ``DeliveryError`` (retriable) when Kafka
        is away: nothing may then be considered delivered and the caller retries the whole batch."""
        try:
            await self.send_batch(items, timeout=timeout)
            return 0
        except DeliveryError as exc:
            if exc.retriable or not exc.failures:
                raise
            poison: list[Item] = []
            for idx, err in exc.failures:
                topic, key, value = items[idx]
                if topic == self.deadletter_topic:
                    raise DeliveryError(f"Kafka refused a dead letter on {topic}: {err}", retriable=False,
                                        failures=[(idx, err)]) from exc
                log.error("Kafka refused a record for %s (%s); dead-lettering it", topic, err)
                poison.append(self.dead_letter_item(make_dead_letter(
                    source=source, stage="receive", raw=value, error=err, topic=topic,
                    content_type="avro/binary", at_ms=at_ms)))
            await self.send_batch(poison, timeout=timeout)
            return len(poison)

    async def send_dead_letter(self, record: Mapping[str, Any], *, timeout: float | None = None) -> "RecordMetadata":
        """Publish a DeadLetter dict (from ``schemas.deadletter.make_dead_letter``), key = source."""
        topic, key, value = self.dead_letter_item(record)
        return await self.send(topic, key, value, timeout=timeout)


def _int_config(configs: Mapping[str, Any], name: str) -> int | None:
    """An integer config value of a describe_configs answer (None when absent or not a number)."""
    entry = configs.get(name)
    value = entry.get("value") if isinstance(entry, Mapping) else entry
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
