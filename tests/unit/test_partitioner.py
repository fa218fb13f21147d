from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2 as aiokafka_murmur2
from hypothesis import given, settings, strategies as st

from streams.worker.partitioner import KeyPartitioner, murmur2


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_known_values_of_javas_murmur2() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed ints there)
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             bytes([ord("a"), ord("b"), ord("c")]): 479470107}
    for data, signed in cases.items():
        assert murmur2(data) == signed & 0xFFFFFFFF


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.integers(1, 64))
def test_partition_is_the_default_partitioners(key: bytes, n: int) -> None:
    partitions = list(range(n))
    ours = KeyPartitioner(max_keys=4)
    assert ours(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)
    assert ours(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)  # remembered


def test_no_key_goes_to_an_available_partition_and_memory_is_bounded() -> None:
    p = KeyPartitioner(max_keys=3)
    assert all(p(None, [0, 1, 2, 3], [2]) == 2 for _ in range(20))
    assert p(None, [0, 1], []) in (0, 1)
    for i in range(10):
        p(str(i).encode(), [0, 1, 2], [0, 1, 2])
    assert len(p._hashes) <= 3
