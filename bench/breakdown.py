"""Where a request's time goes, by part of the request: a pyinstrument call tree summed into
the parts issue 20 names (token check, rate limit, tenant, queries, serialisation, audit,
outbox, log line, metrics…), and the database round trips each request makes.

Two kinds of part. A *feature* (token check, rate limit, tenant, audit, outbox, log line,
metrics) takes everything under its outermost frame, its own queries included: what the request
would save without it. Everything else goes to the innermost *layer* that matches a frame
(database driver, query building, serialisation, filter/PATCH engines, store logic, endpoint,
framework); a frame no rule names (the standard library, say) counts for the layer that called
it. The samples are pyinstrument's: a C function's time is its Python caller's self time, so
"driver calls" is the time spent inside the driver's execute, BEGIN and COMMIT (on PostgreSQL
mostly waiting for the server), while fetching rows, which peewee's cursor wrappers and
`app/store/prepared.py` call, lands in "peewee & rows" with building the SQL. The profiler slows
small Python calls more than C work, so the parts are proportions of the profiled run scaled to
the unprofiled time per request: good for ranking where the time goes, not for a few percent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Rule = Callable[[str, str], bool]


def _in(*fragments: str) -> Rule:
    return lambda path, function: any(f in path for f in fragments)


def _at(fragment: str, *functions: str) -> Rule:
    return lambda path, function: fragment in path and function in functions


# Outermost match wins: a feature's own queries belong to the feature.
FEATURES: list[tuple[str, Rule]] = [
    ("token check", _in("/app/auth.py", "/app/oauth/", "/app/freshness.py")),
    ("rate limit", _in("/app/ratelimit.py", "/limits/")),
    ("tenant", _in("/app/store/tenancy.py", "/app/store/tenants.py")),
    ("tenant", _at("/app/runtime.py", "tenant_settings", "tenant", "_load_tenant")),
    ("audit", _in("/app/store/audit.py")),
    ("outbox", _in("/app/store/outbox.py")),
    ("log line", _in("/logging/")),
    ("log line", _at("/app/observability.py", "format", "redact")),
    ("metrics", _in("/prometheus_client/")),
    ("metrics", _at("/app/observability.py", "_count", "_started", "_route", "_resource")),
]

# Innermost match wins; an unmatched frame keeps its caller's layer.
LAYERS: list[tuple[str, Rule]] = [
    ("driver calls", _at("peewee.py", "execute_sql", "begin", "commit", "rollback")),
    ("driver calls", _in("/psycopg2/", "/playhouse/pool.py", "/app/store/db.py")),
    ("peewee & rows", _in("peewee.py", "/app/store/prepared.py", "/app/store/filter_sql.py")),
    ("serialisation", _in("/app/marshal/", "/app/scim/responses.py", "/app/scim/json_stream.py")),
    ("serialisation", _in("/app/attributes.py", "/marshmallow/", "/json/")),
    ("filter & PATCH engines", _in("/app/filters/", "/app/patch/", "/scim2_filter_parser/")),
    ("store logic", _in("/app/store/")),
    ("endpoint", _in("/app/scim/", "/app/etags.py", "/app/cursors.py")),
    ("framework", _in("/flask/", "/werkzeug/", "/app/__init__.py")),
]

ORDER = list(dict.fromkeys([name for name, _ in FEATURES + LAYERS] + ["other"]))


def _match(rules: list[tuple[str, Rule]], path: str, function: str) -> str | None:
    for name, rule in rules:
        if rule(path, function):
            return name
    return None


def attribute(root: Any) -> Counter[str]:
    """Seconds per part, summed over a pyinstrument frame tree (`session.root_frame()`)."""
    parts: Counter[str] = Counter()
    stack: list[tuple[Any, str | None, str]] = [(root, None, "other")]
    while stack:
        frame, feature, layer = stack.pop()
        path = (frame.file_path or "").replace("\\", "/")
        function = frame.function or ""
        feature = feature or _match(FEATURES, path, function)
        layer = _match(LAYERS, path, function) or layer
        parts[feature or layer] += frame.total_self_time
        stack.extend((child, feature, layer) for child in frame.children)
    return parts


class RoundTrips:
    """Counts what each request sends the database: statements, and on PostgreSQL (autocommit
    connections, peewee's explicit transactions) the BEGIN and COMMIT/ROLLBACK around them."""

    KINDS = ("execute_sql", "begin", "commit", "rollback")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.begin_is_sent = True  # False where BEGIN goes with the first statement

    @contextmanager
    def counting(self, database: Any) -> Iterator[RoundTrips]:
        cls = type(database)
        self.begin_is_sent = not getattr(cls, "BEGIN_WITH_FIRST_STATEMENT", False)
        originals = {kind: getattr(cls, kind) for kind in self.KINDS}

        def counted(kind: str) -> Callable[..., Any]:
            original = originals[kind]

            def call(db: Any, *args: Any, **kwargs: Any) -> Any:
                self.counts[kind] += 1
                return original(db, *args, **kwargs)

            return call

        for kind in self.KINDS:
            setattr(cls, kind, counted(kind))
        try:
            yield self
        finally:
            for kind, original in originals.items():
                setattr(cls, kind, original)

    def per_request(self, requests: int) -> dict[str, float]:
        statements = self.counts["execute_sql"]
        transactions = self.counts["commit"] + self.counts["rollback"]
        begins = self.counts["begin"] if self.begin_is_sent else 0
        return {
            "statements": statements / requests,
            "transactions": transactions / requests,
            "round trips": (statements + begins + transactions) / requests,
        }


def table(rows: list[tuple[str, float, Counter[str], dict[str, float]]]) -> str:
    """A Markdown table: per phase, ms per request in each part (parts any phase uses)."""
    used = [p for p in ORDER if any(parts[p] > 0 for _, _, parts, _ in rows)]
    head = ["phase", "ms/req", *used, "statements", "round trips"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name, total, parts, trips in rows:
        sampled = sum(parts.values()) or 1.0
        # The parts in proportion to the profiled time, scaled to the unprofiled ms/request.
        cells = [f"{total * parts[p] / sampled:.3f}" for p in used]
        lines.append(
            f"| {name} | {total:.3f} | "
            + " | ".join(cells)
            + f" | {trips['statements']:.1f} | {trips['round trips']:.1f} |"
        )
    return "\n".join(lines)
