"""streams/worker/codec.py: aiokafka's gzip batches at the worker's level, still plain gzip."""
from __future__ import annotations

import gzip

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from streams.worker import codec

GZIP = 1  # Kafka's compression attribute for gzip


def _batch(values: list[bytes]) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=GZIP, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 22)
    for i, value in enumerate(values):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"513221", value=value, headers=[])
    return bytes(builder.build())


@pytest.fixture
def restore_codec():
    """Put aiokafka's own encoder back after the test (the patch is process-wide)."""
    saved = [(m, m.gzip_encode, m.gzip_decode) for m in codec._modules()]
    yield
    for module, encode, decode in saved:
        module.gzip_encode, module.gzip_decode = encode, decode


def test_level_is_used_and_batches_round_trip(restore_codec: None) -> None:
    values = [(f'{{"event_id": "ev-{i:06d}", "kind": "traffic.accident", "score": {i * 0.37}}}' * 20).encode()
              for i in range(200)]
    before = len(_batch(values))  # aiokafka's level 9
    patched = codec.use_gzip_level(1)
    assert "aiokafka.record.default_records" in patched
    assert codec.gzip_level_in_use() == 1
    data = _batch(values)
    batch = DefaultRecordBatch(data)
    assert batch.compression_type == GZIP
    assert [r.value for r in batch] == values
    assert len(data) >= before  # level 1 trades a little size for CPU...
    assert len(data) < sum(map(len, values)) / 5  # ...and still compresses


def test_output_is_plain_gzip_any_reader_decodes() -> None:
    payload = b"\xe6\xb1\xb6\xe5\xb7\x9d" * 5000
    encoded = codec.gzip_encoder(1)(payload)
    assert encoded[:2] == b"\x1f\x8b"
    assert gzip.decompress(encoded) == payload
    assert codec.gzip_decode(gzip.compress(payload, 9) + gzip.compress(b"tail", 9)) == payload + b"tail"


@pytest.mark.parametrize("level", [0, 10])
def test_level_out_of_range_is_refused(level: int) -> None:
    with pytest.raises(ValueError, match="1..9"):
        codec.gzip_encoder(level)
