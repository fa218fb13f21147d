"""KRaft cluster ids for `kafka-storage format -t` (infra.stack.kafka_cluster_id)."""
from __future__ import annotations

import base64
import re

from infra.stack import kafka_cluster_id


def test_cluster_ids_are_16_byte_url_safe_and_never_look_like_an_option() -> None:
    # about 1 in 64 random UUIDs encode to "-…", which the storage tool's parser reads as an option
    # (two fault-test runs failed with "argument --cluster-id/-t: expected one argument")
    ids = [kafka_cluster_id() for _ in range(3000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cid) for cid in ids)
    assert all(len(base64.urlsafe_b64decode(cid + "==")) == 16 for cid in ids)
    assert len(set(ids)) == len(ids)
