"""A center's work on incidents: action requests, who may act, the queue, the live stream (pure).

Contracts
- `parse_action(payload) -> ActionRequest | Refusal`: the JSON body of
  ``POST /api/incidents/{id}/actions`` — ``{action, assignee?, outcome?, note?, to_tier?,
  request_id?}`` — validated (400 with a reason otherwise; errors are data, nothing raises).
- `credential_tier(admin_code)`: the tier a credential acts at (12-digit village → village,
  9-digit town → town, county or wider → county).
- `decide_action(request, incident, admin_code, rules) -> Refusal | None`: 403 when the credential's
  tier is below the incident's (a village center cannot act on a town or county incident), 409
  when `streams.domain.lifecycle.check` refuses the transition; None: allowed. The incident is the
  indexed document (its own tier and status, not a town/village view of it).
- `build_disposition(request, incident, user, admin_code, now_ms) -> dict`: the pingan.Disposition
  record (deterministic id from the incident's anchor event = min(event_ids), note/outcome/assignee
  masked like event free text).
- `queue_key(item)` orders the work queue: handling deadline soonest first (none last), then
  severity high first, then id; `due_state(deadline_at, now_ms, window_ms)` is "overdue",
  "due_soon" or None.
- `visible_incident(admin_code, record)`: the index document of an incidents.v1 record when a
  credential of `admin_code` could read it (the search API's rule, `jurisdiction.can_see`), else
  None; `visible_disposition(admin_code, record, known_paths)`: whether a dispositions.v1 record
  may be streamed to it (the incident's admin path, when seen on the stream, includes the
  credential; else the acting center is inside the credential's area).
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.elasticsearch.documents import DocumentError, incident_document
from streams.domain import admin, lifecycle
from streams.domain.normalize import mask_free_text
from streams.domain.tiers import TIER_NAMES_CN, TierRules
from streams.web.jurisdiction import can_see

MAX_TEXT = 500
MAX_ASSIGNEE = 64
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
#: statuses of records before Incident v2, as the lifecycle knows them
LEGACY_STATUS = {"escalated": "open", "closed": "resolved"}
CLOSED_STATUSES = ("resolved", "merged", "closed")


@dataclass(frozen=True, slots=True)
class Refusal:
    """An action (or body) the API refuses: HTTP status and a reason (Chinese first)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """A validated action body."""

    action: str
    request_id: str
    assignee: str | None = None
    outcome: str | None = None
    note: str | None = None
    to_tier: str | None = None

    def as_audit(self) -> dict[str, Any]:
        """What the audit log records (no free text: only whether a note/outcome was given)."""
        return {"action": self.action, "request_id": self.request_id, "to_tier": self.to_tier,
                "has_assignee": self.assignee is not None, "has_note": self.note is not None,
                "has_outcome": self.outcome is not None}


def _text(payload: Mapping[str, Any], name: str, limit: int) -> str | None | Refusal:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        return Refusal(400, f"{name} 必须是字符串 ({name} must be a string)")
    value = value.strip()
    if len(value) > limit:
        return Refusal(400, f"{name} 超过 {limit} 字 ({name} longer than {limit} characters)")
    return value or None


def parse_action(payload: Any, *, new_request_id: str | None = None) -> ActionRequest | Refusal:
    """Validate an action body; `new_request_id` is used when the client gave none."""
    if not isinstance(payload, Mapping):
        return Refusal(400, "请求体必须是 JSON 对象 (body must be a JSON object)")
    unknown = sorted(set(payload) - {"action", "assignee", "outcome", "note", "to_tier", "request_id"})
    if unknown:
        return Refusal(400, f"未知字段 {', '.join(map(str, unknown))} (unknown fields)")
    action = payload.get("action")
    if action not in lifecycle.ACTIONS:
        return Refusal(400, f"action 必须是 {', '.join(lifecycle.ACTIONS)} 之一 (unknown action)")
    fields: dict[str, Any] = {}
    for name, limit in (("assignee", MAX_ASSIGNEE), ("outcome", MAX_TEXT), ("note", MAX_TEXT),
                        ("to_tier", 16), ("request_id", 64)):
        value = _text(payload, name, limit)
        if isinstance(value, Refusal):
            return value
        fields[name] = value
    if action == "assign" and not fields["assignee"]:
        return Refusal(400, "分派需要填写承办人 (assign needs assignee)")
    if action == "resolve" and not fields["outcome"]:
        return Refusal(400, "办结需要填写办理结果 (resolve needs outcome)")
    if action == "note" and not fields["note"]:
        return Refusal(400, "备注不能为空 (note needs note)")
    if action == "escalate" and fields["to_tier"] not in TIER_NAMES_CN:
        return Refusal(400, "上报需要 to_tier: village | town | county (escalate needs to_tier)")
    if action != "escalate" and fields["to_tier"] is not None:
        return Refusal(400, "只有上报可以指定 to_tier (to_tier is for escalate only)")
    request_id = fields.pop("request_id") or new_request_id or uuid.uuid4().hex
    if not _REQUEST_ID.match(request_id):
        return Refusal(400, "request_id 只能含字母、数字和 _.:- (invalid request_id)")
    return ActionRequest(action=action, request_id=request_id, **fields)


def credential_tier(admin_code: str) -> str:
    """The tier a credential acts at: village (12 digits), town (9), county (6 or fewer)."""
    if len(admin_code) >= 12:
        return "village"
    if len(admin_code) >= 9:
        return "town"
    return "county"


def lifecycle_status(status: str | None) -> str:
    """The indexed status as the lifecycle knows it (pre-v2 escalated/closed mapped)."""
    s = status or "open"
    return LEGACY_STATUS.get(s, s)


def decide_action(request: ActionRequest, incident: Mapping[str, Any], admin_code: str,
                  rules: TierRules) -> Refusal | None:
    """None when a credential of `admin_code` may take `request` on `incident`, else the refusal."""
    tier = str(incident.get("tier") or "village")
    mine = credential_tier(admin_code)
    if tier in rules.tiers and rules.rank(mine) < rules.rank(tier):
        return Refusal(403, f"该事件由{TIER_NAMES_CN.get(tier, tier)}处置，{TIER_NAMES_CN[mine]}中心无权"
                            f"{lifecycle.ACTION_NAMES_CN[request.action]} (incident is handled at {tier} tier)")
    if incident.get("actionable") is False:
        return Refusal(409, "仅作线索的事件无需处置 (evidence only: not actionable)")
    status = lifecycle_status(incident.get("status"))
    if status == "merged":
        return Refusal(409, f"事件已合并至 {incident.get('merged_into')} (incident is merged)")
    try:
        lifecycle.check(request.action, status, tier=tier, to_tier=request.to_tier, rules=rules)
    except lifecycle.ActionRefused as exc:
        return Refusal(409, str(exc))
    return None


def anchor_event(incident: Mapping[str, Any]) -> str | None:
    """The incident's earliest event id (min of event_ids)."""
    ids = [str(e) for e in incident.get("event_ids") or () if e]
    if not ids:
        ids = [str(e["event_id"]) for e in incident.get("events") or () if e.get("event_id")]
    return min(ids) if ids else None


def build_disposition(request: ActionRequest, incident: Mapping[str, Any], user: str, admin_code: str,
                      now_ms: int) -> dict[str, Any]:
    """The pingan.Disposition record of an allowed action (origin "center")."""
    anchor = anchor_event(incident) or str(incident["incident_id"])
    county = str(incident.get("county_code") or admin.prefix(str(incident.get("admin_code") or ""), 6) or "")
    return {
        "disposition_id": lifecycle.disposition_id(anchor, request.action, user, request.request_id),
        "incident_id": str(incident["incident_id"]), "anchor_event_id": anchor, "county_code": county,
        "action": request.action, "actor": user, "actor_admin_code": admin_code, "at": int(now_ms),
        "assignee": mask_free_text(request.assignee), "outcome": mask_free_text(request.outcome),
        "note": mask_free_text(request.note), "to_tier": request.to_tier, "origin": "center",
        "request_id": request.request_id,
    }


def due_state(deadline_at: int | None, now_ms: int, window_ms: int) -> str | None:
    """"overdue" past the deadline, "due_soon" within `window_ms` of it, else None."""
    if deadline_at is None:
        return None
    if deadline_at <= now_ms:
        return "overdue"
    return "due_soon" if deadline_at - now_ms <= window_ms else None


def queue_key(item: Mapping[str, Any]) -> tuple[int, int, int, str]:
    """Sort key of the work queue: deadline soonest first (none last), severity desc, id."""
    deadline = item.get("deadline_at")
    return (0 if deadline is not None else 1, int(deadline or 0), -int(item.get("severity") or 0),
            str(item.get("incident_id") or ""))


def visible_incident(admin_code: str, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The index document of an incidents.v1 record if a credential of `admin_code` may read it."""
    if record.get("status") == "merged" or not record.get("incident_id"):
        return None
    try:
        _, doc = incident_document(record)
    except DocumentError:
        return None
    return doc if can_see(admin_code, doc) else None


def visible_merge(admin_code: str, record: Mapping[str, Any], known_paths: Mapping[str, list[str]]) -> bool:
    """A merged-away incident id may be announced to credentials that could see it before."""
    path = known_paths.get(str(record.get("incident_id")))
    return path is not None and admin_code in path


def sees_whole(admin_code: str, owner: str | None) -> bool:
    """Whether a credential of `admin_code` sees every event of an incident whose own admin code
    (the area holding all its events) is `owner` — the detail view's test for showing its actions."""
    return bool(owner) and admin.within(owner, admin_code)


def visible_disposition(admin_code: str, record: Mapping[str, Any], known_paths: Mapping[str, list[str]]) -> bool:
    """Whether a dispositions.v1 record may be streamed to a credential of `admin_code`."""
    path = known_paths.get(str(record.get("incident_id")))
    if path is not None:
        return admin_code in path
    actor = str(record.get("actor_admin_code") or "")
    return bool(actor) and admin.is_code(actor) and admin.within(actor, admin_code)
