"""An audit event's changes as lines a person reads: which values changed, from what to what.

Plain data in (the operation, the `changes` the audit trail stored, user names by id), lines
out; no Flask, no database. The shapes come from `app.store.audit.diff` (`{"before", "after"}`
per attribute; extension attributes under their URN path), `app.store.memberships` (a group's
`members: {"added", "removed"}`; a user's `group_join`/`group_leave`) and `app.store.seed`
(`members: {"count"}`)::

    emails[work]: a@x → b@x
    active: true → false
    members: +3 (Ana, Bo, Cy) −1 (Dee)
    joined group “Teachers”
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_VALUE = 80  # characters of one value shown; the rest is cut with “…”
MAX_NAMES = 5  # member names listed per side of a members change
NOTHING = "—"


def describe(
    operation: str, changes: Mapping[str, Any] | None, names: Mapping[str, str] | None = None
) -> list[str]:
    """The lines for one event: one per changed value (a multi-valued attribute: one per
    element that changed), members as counts with names, a group joined or left as such."""
    changes = dict(changes or {})
    names = names or {}
    if operation in ("group_join", "group_leave"):
        side = "after" if operation == "group_join" else "before"
        group = _side(changes.pop("group", None), side)
        changes.pop("groupId", None)
        verb = "joined" if operation == "group_join" else "left"
        lines = [f"{verb} group “{_clip(_text(group))}”"]
        return lines + _lines(changes, names)
    return _lines(changes, names)


def member_names(changes: Mapping[str, Any] | None) -> list[str]:
    """The user ids a `members` change names (to look their names up before `describe`)."""
    members = (changes or {}).get("members")
    if not isinstance(members, dict):
        return []
    return [
        uid
        for side in ("added", "removed")
        for uid in members.get(side) or []
        if isinstance(uid, str)
    ]


def _lines(changes: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    lines: list[str] = []
    for key, change in changes.items():
        label = _label(key)
        if key == "members" and isinstance(change, dict) and not _is_change(change):
            lines.append(_members(change, names))
        elif _is_change(change):
            lines += _change(label, change.get("before"), change.get("after"))
        else:
            lines.append(f"{label}: changed")
    return lines


def _is_change(value: Any) -> bool:
    return isinstance(value, dict) and bool({"before", "after"} & set(value))


def _side(change: Any, side: str) -> Any:
    return change.get(side) if isinstance(change, dict) else change


def _label(key: str) -> str:
    """An attribute's name; an extension's (`urn:…:User:department`) without its schema URN."""
    return key.rsplit(":", 1)[-1] if key.startswith("urn:") else key


def _change(label: str, before: Any, after: Any) -> list[str]:
    if _is_list_of_dicts(before) or _is_list_of_dicts(after):
        return _elements(label, before or [], after or [])
    if isinstance(before, list) or isinstance(after, list):
        return _plain_list(label, before or [], after or [])
    if isinstance(before, dict) or isinstance(after, dict):
        return _complex(label, before or {}, after or {})
    if before == after:
        return []
    if before is None:
        return [f"{label}: {_clip(_text(after))}"]
    return [f"{label}: {_clip(_text(before))} → {_clip(_text(after))}"]


def _complex(label: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """`name.givenName: Al → Alice`: one line per sub-attribute that changed."""
    lines = []
    for sub in sorted(set(before) | set(after), key=str):
        lines += _change(f"{label}.{sub}", before.get(sub), after.get(sub))
    return lines


def _is_list_of_dicts(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(item, dict) for item in value)


def _elements(label: str, before: list[Any], after: list[Any]) -> list[str]:
    """Multi-valued attributes (emails, phoneNumbers, addresses, …) element by element, each
    named by its `type` (RFC 7643 §2.4): `emails[work]: a@x → b@x`, `+ c@x` for one added,
    `− d@x` for one removed. Elements of one type pair up in order."""
    old, new = _by_type(before), _by_type(after)
    lines = []
    for kind in [*old, *(k for k in new if k not in old)]:
        name = f"{label}[{kind}]" if kind else label
        was, now = old.get(kind, []), new.get(kind, [])
        for n in range(max(len(was), len(now))):
            a = was[n] if n < len(was) else None
            b = now[n] if n < len(now) else None
            if a == b:
                continue
            if a is None:
                lines.append(f"{name}: + {b}")
            elif b is None:
                lines.append(f"{name}: − {a}")
            else:
                lines.append(f"{name}: {a} → {b}")
    return lines


def _by_type(items: list[Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in items:
        kind = str(item.get("type") or "") if isinstance(item, dict) else ""
        found.setdefault(kind, []).append(_element(item))
    return found


_ADDRESS_PARTS = ("streetAddress", "locality", "region", "postalCode", "country")


def _element(item: Any) -> str:
    if not isinstance(item, dict):
        return _clip(_text(item))
    value = item.get("value")
    if value is None and "formatted" in item:
        value = item["formatted"]
    if value is None:
        parts = [str(item[p]) for p in _ADDRESS_PARTS if item.get(p)]
        value = ", ".join(parts) if parts else item.get("display")
    text = _clip(_text(value))
    return f"{text} (primary)" if item.get("primary") is True else text


def _plain_list(label: str, before: list[Any], after: list[Any]) -> list[str]:
    added = [v for v in after if v not in before]
    removed = [v for v in before if v not in after]
    parts = [f"+ {_clip(_text(v))}" for v in added] + [f"− {_clip(_text(v))}" for v in removed]
    return [f"{label}: {', '.join(parts)}"] if parts else []


def _members(change: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """`members: +3 (Ana, Bo, Cy) −1 (Dee)`; a user since deleted shows its id's start."""
    if "count" in change and not ({"added", "removed"} & set(change)):
        return f"members: {change['count']}"
    parts = []
    for sign, side in (("+", "added"), ("−", "removed")):
        ids = [uid for uid in change.get(side) or [] if isinstance(uid, str)]
        if ids:
            shown = [_clip(names.get(uid) or f"{uid[:8]}…") for uid in ids[:MAX_NAMES]]
            more = f", … {len(ids) - MAX_NAMES} more" if len(ids) > MAX_NAMES else ""
            parts.append(f"{sign}{len(ids)} ({', '.join(shown)}{more})")
    return f"members: {' '.join(parts)}" if parts else "members: unchanged"


def _text(value: Any) -> str:
    """A value as SCIM writes it: true/false, numbers and strings as they are, none as —."""
    if value is None:
        return NOTHING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
