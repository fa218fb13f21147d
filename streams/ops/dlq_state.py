"""Dead-letter state: one letter per id with its history, unique-prefix ids, patches before re-drive.

Decision: the state lives in an append-only journal file, ``run_dir/dlq/state-<tag>.jsonl`` (one JSON
object per line: ``{"id", "at", "action", "state", "detail", …}``), beside the replay checkpoints —
not in a topic. Dead-letter handling is an operator's task run from one place (the ``pingan-ops``
pod with the run volume, or an operator's shell); ``deadletters.v1`` stays the untouched audit trail
of what failed, the journal records what was done about it. Lines are only appended, so a crash
leaves at most a torn last line (ignored).

Contract (pure apart from `Journal` reading/appending its file):
- states: ``new`` → ``re-driven`` (sent again to its origin topic; the stage re-processes it) →
  ``resolved`` (a translate re-drive whose records are in Kafka, or ``dlq resolve``) or
  ``failed-again`` (the re-drive was rejected again; the new reason is in the history). A letter that
  failed again can be edited and re-driven again.
- `fold(entries)` → id → `LetterState` (last state, history in order, the current patched body).
- `resolve_prefix(prefix, ids)` → the one id starting with `prefix`, else `PrefixError` (none or
  ambiguous; the message lists candidates).
- `apply_patch(raw, patch)` → the corrected body: a JSON merge patch (RFC 7386) on a JSON body, or on
  an Avro record given `decode`/`encode`; `PatchError` when the body is neither (replace the body
  with ``dlq edit --body FILE`` instead).
"""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATES = ("new", "re-driven", "resolved", "failed-again")
AVRO_MARKER = b"\xc3\x01"


class PrefixError(ValueError):
    """A dead-letter id prefix that matches no letter or more than one."""


class PatchError(ValueError):
    """A patch that cannot be applied to a letter's body."""


@dataclass
class LetterState:
    """Where one dead letter stands."""

    id: str
    state: str = "new"
    history: list[dict[str, Any]] = field(default_factory=list)
    body: bytes | None = None  # the edited body, when `dlq edit` corrected it
    content_type: str | None = None

    @property
    def attempts(self) -> int:
        return sum(1 for h in self.history if h.get("action") == "redrive")


def entry(dl_id: str, action: str, state: str, detail: str = "", *, body: bytes | None = None,
          content_type: str | None = None, at_ms: int | None = None, **extra: Any) -> dict[str, Any]:
    """One journal line."""
    if state not in STATES:
        raise ValueError(f"unknown dead-letter state {state!r}")
    out: dict[str, Any] = {"id": dl_id, "at": at_ms if at_ms is not None else int(time.time() * 1000),
                           "action": action, "state": state, "detail": detail, **extra}
    if body is not None:
        out["body_b64"] = base64.b64encode(body).decode()
    if content_type is not None:
        out["content_type"] = content_type
    return out


def fold(entries: Iterable[Mapping[str, Any]]) -> dict[str, LetterState]:
    """Replay journal entries (in order) into each letter's state."""
    out: dict[str, LetterState] = {}
    for e in entries:
        st = out.setdefault(str(e["id"]), LetterState(str(e["id"])))
        st.state = str(e.get("state") or st.state)
        st.history.append({k: v for k, v in e.items() if k not in ("id", "body_b64")})
        if e.get("body_b64") is not None:
            st.body = base64.b64decode(e["body_b64"])
        if e.get("content_type") is not None:
            st.content_type = str(e["content_type"])
    return out


def resolve_prefix(prefix: str, ids: Iterable[str]) -> str:
    """The unique id starting with `prefix` (case-insensitive)."""
    p = prefix.strip().lower()
    if not p:
        raise PrefixError("an empty dead-letter id")
    found = sorted({i for i in ids if i.lower().startswith(p)})
    if not found:
        raise PrefixError(f"no dead letter {prefix!r}")
    if len(found) > 1:
        raise PrefixError(f"{prefix!r} is ambiguous ({len(found)} letters: {', '.join(i[:16] for i in found[:5])}…); "
                          "give more characters")
    return found[0]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(raw: bytes, patch: Mapping[str, Any], *,
                decode: Callable[[bytes], tuple[str, dict[str, Any]]] | None = None,
                encode: Callable[[str, Mapping[str, Any]], bytes] | None = None) -> bytes:
    """`raw` with the merge `patch` applied (a JSON body, or an Avro single-object record)."""
    if raw[:2] == AVRO_MARKER:
        if decode is None or encode is None:
            raise PatchError("an Avro record needs the schema store to be patched")
        name, record = decode(raw)
        try:
            return encode(name, merge_patch(record, patch))
        except Exception as exc:  # noqa: BLE001 - the patched record does not fit its schema: data
            raise PatchError(f"the patched record does not fit {name}: {exc}") from None
    try:
        body = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise PatchError("the body is not JSON (XML, multipart, a file export): replace it with "
                         "`pingan dlq edit ID --body FILE` instead of a merge patch") from None
    return json.dumps(merge_patch(body, patch), ensure_ascii=False).encode()


class Journal:
    """The append-only state journal of one namespace's dead letters."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line after a crash
        return out

    def states(self) -> dict[str, LetterState]:
        return fold(self.entries())

    def append(self, *entries: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            for e in entries:
                fh.write(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n")
            fh.flush()


@dataclass
class Group:
    """One letter as the operator sees it: the first occurrence, later copies of the same failure, its state."""

    id: str
    copies: list[str]
    state: LetterState
    derived: str = ""  # why the state differs from the journal's (a copy after the last re-drive)


def fingerprint(source: str, stage: str, raw: bytes) -> str:
    """The same failure of the same payload (a copy re-dead-lettered after a re-drive, or re-sent)."""
    import hashlib

    return hashlib.sha256(f"{source}\0{stage}\0".encode() + raw).hexdigest()


def collapse(letters: Iterable[tuple[str, str, int, str | None]], states: Mapping[str, LetterState]) -> list[Group]:
    """Group ``(id, fingerprint, at_ms, redrive_of)`` tuples (oldest first) into one `Group` per failure.

    A letter with the fingerprint of an earlier one, or whose ``redrive_of`` names an earlier one, is
    a copy; a copy that appeared after the group's last re-drive makes the group ``failed-again``."""
    groups: dict[str, Group] = {}
    by_print: dict[str, str] = {}
    seen_at: dict[str, int] = {}
    for dl_id, fp, at, redrive_of in letters:
        primary = redrive_of if redrive_of in groups else by_print.get(fp)
        if primary is None:
            if dl_id in groups:
                continue
            groups[dl_id] = Group(dl_id, [], states.get(dl_id) or LetterState(dl_id))
            by_print[fp] = dl_id
            continue
        g = groups[primary]
        if dl_id != primary and dl_id not in g.copies:
            g.copies.append(dl_id)
        seen_at[dl_id] = at
        last_redrive = max((int(h.get("at") or 0) for h in g.state.history if h.get("action") == "redrive"),
                           default=None)
        if last_redrive is not None and at > last_redrive and g.state.state == "re-driven":
            g.derived = f"dead-lettered again as {dl_id[:12]} after the re-drive"
            g.state = LetterState(g.state.id, "failed-again", g.state.history, g.state.body, g.state.content_type)
    return list(groups.values())
