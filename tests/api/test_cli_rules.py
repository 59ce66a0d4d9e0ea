"""One set of rules for every `lms-scim` command (issue 19 §4), on SQLite and PostgreSQL: an
unknown or ambiguous reference is a one-line error and exit 1; every listing speaks
`--format table|json|csv` with a header row, ISO 8601 `Z` timestamps in JSON and CSV and the
same booleans everywhere."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import sys
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from app.cli import LmsScimGroup, common
from app.store.models import ApiToken, AuditEvent, utcnow
from tests.helpers import PASSWORD, create_group, create_user, feed, invoke, run

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def twins(scim: Any) -> dict[str, Any]:
    """alice in group `Twin`, bob in group `twin`: one name, two groups."""
    alice = create_user(scim, "alice@example.com")
    bob = create_user(scim, "bob@example.com")
    first = create_group(scim, "Twin", alice["id"])
    second = create_group(scim, "twin", bob["id"])
    return {"alice": alice, "bob": bob, "first": first, "second": second}


# -- unknown or ambiguous references -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("audit", "--user", "nobody"), "No user with id, userName, externalId or e-mail 'nobody'"),
        (("users", "status", "nobody"), "No user with"),
        (("users", "list", "--group", "Nope"), "No group with id or displayName 'Nope'"),
        (("users", "list", "--group", "Twin"), "More than one group is called 'Twin'; use the id"),
        (("enrolments", "add", "twin", "101", "--role", "student"), "More than one group"),
        (("enrolments", "list", "Twin"), "More than one group"),
        (("tokens", "revoke", "nope"), "No token named 'nope'"),
        (("tokens", "rotate", "nope"), "No token named 'nope'"),
        (("operators", "disable", "nobody"), "No operator named 'nobody'"),
        (("operators", "enable", "nobody"), "No operator named 'nobody'"),
        (("operators", "delete", "nobody", "--yes"), "No operator named 'nobody'"),
    ],
)
def test_an_unknown_or_ambiguous_reference_is_one_line_and_exit_1(
    app: Flask, twins: dict[str, Any], args: tuple[str, ...], message: str
) -> None:
    result = invoke(app, *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""  # no empty table, no header


def test_operators_password_refuses_an_unknown_name_before_asking(app: Flask) -> None:
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["operators", "password", "nobody"], input="")
    assert result.exit_code == 1
    assert "No operator named 'nobody'" in result.output
    assert "Password" not in result.output  # never prompted


def test_users_list_by_group_takes_the_id_of_a_shared_name(
    app: Flask, twins: dict[str, Any]
) -> None:
    listed = run(app, "users", "list", "--group", twins["second"]["id"], "--format", "json")
    assert [json.loads(line)["userName"] for line in listed.stdout.splitlines()] == [
        "bob@example.com"
    ]


def test_audit_of_a_deleted_user_by_the_id_the_trail_knows(app: Flask, scim: Any) -> None:
    gone = create_user(scim, "gone@example.com")
    assert scim.delete(f"/Users/{gone['id']}").status_code == 204
    lines = run(app, "audit", "--user", gone["id"], "--format", "json").stdout.splitlines()
    assert [json.loads(line)["operation"] for line in lines] == ["create", "delete"]
    unknown = invoke(app, "audit", "--user", "0" * 32)
    assert unknown.exit_code == 1
    assert "No user" in unknown.stderr


# -- tokens revoke twice; operators create with a name that is taken ---------------------------


def test_revoking_a_revoked_token_says_so_and_succeeds(app: Flask) -> None:
    run(app, "tokens", "create", "okta")
    assert "Revoked 1 token(s) named 'okta'" in run(app, "tokens", "revoke", "okta").stdout
    revoked_at = ApiToken.get().revoked_at
    again = invoke(app, "tokens", "revoke", "okta")
    assert again.exit_code == 0  # idempotent, like `tenants disable`
    assert "Token 'okta' was revoked already." in again.stdout
    assert ApiToken.get().revoked_at == revoked_at  # not moved


def test_revoking_a_revoked_client_says_so_and_succeeds(app: Flask) -> None:
    run(app, "clients", "create", "entra")
    assert "Revoked client 'entra'." in run(app, "clients", "revoke", "entra").stdout
    events = AuditEvent.select().count()
    again = run(app, "clients", "revoke", "entra")
    assert "Client 'entra' was revoked already." in again.stdout
    assert AuditEvent.select().count() == events  # nothing written twice
    unknown = invoke(app, "clients", "revoke", "nope")
    assert unknown.exit_code == 1


def test_operators_create_refuses_a_taken_name_before_the_password_prompt(app: Flask) -> None:
    run(app, "operators", "create", "olivia", "--password", PASSWORD)
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["operators", "create", "olivia"], input="")
    assert result.exit_code == 1
    assert "An operator named 'olivia' exists." in result.output
    assert "Password" not in result.output
    unknown = app.test_cli_runner().invoke(
        args=["operators", "create", "bea", "--tenant", "nope"], input=""
    )
    assert unknown.exit_code == 1
    assert "No tenant 'nope'" in unknown.output
    assert "Password" not in unknown.output


# -- --format table|json|csv on every listing --------------------------------------------------


@pytest.fixture
def everything(app: Flask, scim: Any) -> None:
    """One of each: a user, a revoked token, an OAuth client, an operator."""
    create_user(scim, "alice@example.com")
    run(app, "tokens", "create", "old")
    run(app, "tokens", "revoke", "old")
    run(app, "clients", "create", "entra")
    run(app, "operators", "create", "olivia", "--password", PASSWORD)
    create_group(scim, "Physics")
    run(app, "enrolments", "add", "Physics", "101", "--role", "student")


LISTINGS = [
    (("tokens", "list"), "created", "name"),
    (("clients", "list"), "created", "name"),
    (("operators", "list"), "created", "name"),
    (("tenants", "list"), "lastActivity", "slug"),
    (("audit",), "at", "time"),
    (("users", "list"), "lastModified", "id"),
    (("enrolments", "list"), "created", "group"),
]


@pytest.mark.parametrize(("command", "timestamp", "first_header"), LISTINGS)
def test_every_listing_speaks_table_json_and_csv(
    app: Flask, everything: None, command: tuple[str, ...], timestamp: str, first_header: str
) -> None:
    table = run(app, *command).stdout.splitlines()
    rows = list(csv.DictReader(io.StringIO(run(app, *command, "--format", "csv").stdout)))
    out = run(app, *command, "--format", "json").stdout
    objects = (
        [json.loads(line) for line in out.splitlines()]
        if command[0] in ("audit", "users")  # streams: one object per line
        else json.loads(out)
    )
    assert rows
    assert len(objects) == len(rows) == len(table) - 1  # a header row, then a line per row
    assert list(rows[0]) == list(objects[0])  # CSV's header is JSON's keys
    for row, obj in zip(rows, objects, strict=True):
        assert ISO_Z.match(row[timestamp]), row
        assert obj[timestamp] == row[timestamp]
    assert table[0].split()[0] == first_header


def test_booleans_are_the_same_in_every_format(app: Flask, scim: Any) -> None:
    alice = create_user(scim, "alice@example.com")
    scim.patch(
        f"/Users/{alice['id']}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        },
    )
    table = run(app, "users", "list").stdout.splitlines()
    assert table[1].split()[-1] == "false"
    (row,) = csv.DictReader(io.StringIO(run(app, "users", "list", "--format", "csv").stdout))
    assert row["active"] == "false"
    line = run(app, "users", "list", "--format", "json").stdout
    assert json.loads(line)["active"] is False
    assert '"active": false' in line


@pytest.fixture
def states(app: Flask, acme: Any, clock: Any) -> None:
    """Every state a token, client, operator and tenant can be in, in two tenants."""
    run(app, "tokens", "create", "okta", "--tenant", "default")
    run(app, "tokens", "rotate", "okta", "--tenant", "default")  # the old one is rotating
    run(app, "tokens", "create", "reader", "--read-only", "--tenant", "default")
    run(app, "tokens", "create", "old", "--tenant", "default")
    run(app, "tokens", "revoke", "old", "--tenant", "default")
    run(app, "tokens", "create", "brief", "--expires-in", "1m", "--tenant", "default")
    run(app, "clients", "create", "entra", "--tenant", "default")
    run(app, "clients", "create", "gone", "--read-only", "--tenant", "default")
    run(app, "clients", "revoke", "gone", "--tenant", "default")
    run(app, "operators", "create", "olivia", "--password", PASSWORD)
    run(app, "operators", "create", "bea", "--tenant", "acme", "--password", PASSWORD)
    run(app, "operators", "disable", "bea")
    run(app, "tenants", "disable", "acme")
    clock.advance(minutes=2)  # `brief` has expired


def _table(text: str) -> list[list[str]]:
    """A table's rows (header first) cut at the columns the header row starts."""
    header, *lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    cuts = list(zip(starts, [*starts[1:], None], strict=True))
    return [[line[a:b].strip() for a, b in cuts] for line in [header, *lines]]


@pytest.mark.parametrize(
    ("command", "states_seen"),
    [
        (("tokens", "list", "--tenant", "default"), {"active", "rotating", "revoked", "expired"}),
        (("clients", "list", "--tenant", "default"), {"active", "revoked"}),
        (("operators", "list"), {"active", "disabled"}),
        (("tenants", "list"), {"active", "disabled"}),
    ],
)
def test_listings_say_the_same_in_every_format(
    app: Flask, states: None, command: tuple[str, ...], states_seen: set[str]
) -> None:
    """Every value of `tokens|clients|operators|tenants list` reads the same in a table, CSV and
    JSON: state and access words as they are, booleans `true`/`false`, counts as numbers; only
    the spelling of a time (minutes in a table, ISO 8601 `Z` elsewhere) and of nothing (`-` in
    a table, empty in CSV, null in JSON) differs. JSON keys (= CSV headers) are camelCase."""
    table = _table(run(app, *command).stdout)
    rows = list(csv.DictReader(io.StringIO(run(app, *command, "--format", "csv").stdout)))
    objects = json.loads(run(app, *command, "--format", "json").stdout)
    assert len(table) - 1 == len(rows) == len(objects)
    assert {row["state"] for row in rows} == states_seen
    for cells, row, obj in zip(table[1:], rows, objects, strict=True):
        assert list(row) == list(obj)
        assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", key) for key in obj), list(obj)
        for shown, (key, text) in zip(cells, row.items(), strict=True):
            value = obj[key]
            if value is None:
                assert text == ""
                assert shown == "-" or (key, shown) == ("tenant", "(every tenant)"), (key, shown)
            elif isinstance(value, bool):
                assert text == shown == str(value).lower(), key
            elif ISO_Z.match(str(value)):
                assert text == value
                assert shown == value[:16].replace("T", " "), (key, shown)
            else:
                assert text == shown == str(value), (key, text, shown)


def test_stats_as_csv_has_one_figure_a_row(app: Flask, scim: Any) -> None:
    create_user(scim, "alice@example.com")
    rows = list(csv.DictReader(io.StringIO(run(app, "stats", "--format", "csv").stdout)))
    figures = {(r["metric"], r["key"]): r["value"] for r in rows}
    assert figures[("users", "total")] == "1"
    assert figures[("users", "active")] == "1"
    assert figures[("userType", "learner")] == "1"
    assert figures[("tokens", "active")] == "1"
    assert figures[("create", utcnow().date().isoformat())] == "1"


def test_a_table_with_no_rows_still_has_its_header(app: Flask) -> None:
    assert run(app, "operators", "list").stdout.split()[:2] == ["name", "tenant"]
    assert run(app, "clients", "list").stdout.split()[:2] == ["name", "client_id"]
    assert run(app, "operators", "list", "--format", "csv").stdout.strip() == (
        "name,tenant,created,lastSignIn,state,disabledAt"
    )
    assert run(app, "operators", "list", "--format", "json").stdout.strip() == "[]"


# -- lms-scim --help -----------------------------------------------------------------------------


def _help(app: Flask, *path: str) -> str:
    """`lms-scim PATH --help` as the console script prints it on an 80-column terminal."""
    result = CliRunner().invoke(
        LmsScimGroup(create_app=lambda: app), [*path, "--help"], terminal_width=80
    )
    assert result.exit_code == 0, result.output
    return result.output


def _commands(text: str) -> list[tuple[str, str]]:
    """The (name, summary) lines of a help page's Commands section."""
    section = text.partition("\nCommands:\n")[2]
    return [tuple(line.split(None, 1)) for line in section.splitlines() if line.strip()]


def test_help_shows_lms_scims_commands_and_options_only(app: Flask) -> None:
    text = _help(app)
    names = [name for name, _ in _commands(text)]
    assert {"users", "tokens", "audit", "tenants", "operators", "relay"} <= set(names)
    for flasks in ("run", "shell", "routes"):
        assert flasks not in names
    for option in ("--app", "--env-file", "--debug", "--version"):
        assert option not in text


def _every_command(app: Flask, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, _ in _commands(_help(app, *path)):
        found.append((*path, name))
        if "\nCommands:\n" in _help(app, *path, name):
            found.extend(_every_command(app, (*path, name)))
    return found


def test_every_listing_offers_table_json_and_csv(app: Flask) -> None:
    listings = [c for c in _every_command(app) if c[-1] == "list" or c in (("audit",), ("stats",))]
    assert len(listings) >= 9
    for command in listings:
        assert "--format [table|json|csv]" in _help(app, *command), command


def test_no_summary_is_cut_off(app: Flask) -> None:
    """Every group's and command's summary shows whole at 80 columns (click ends a summary
    that does not fit with `...`)."""
    pending = [()]
    seen = 0
    while pending:
        path = pending.pop()
        for name, summary in _commands(_help(app, *path)):
            seen += 1
            assert not summary.endswith("..."), (*path, name, summary)
            if "\nCommands:\n" in _help(app, *path, name):
                pending.append((*path, name))
    assert seen > 30


# -- progress on a terminal ----------------------------------------------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("stderr", "stdout", "output_on_stdout", "shown"),
    [
        (True, False, True, True),  # rows to a file, a person at the terminal
        (True, True, True, False),  # rows to the terminal: the bar would tear through them
        (True, True, False, True),  # a summary at the end: the bar may share the terminal
        (False, False, False, False),  # nobody watches (cron, CI, a pipe)
    ],
)
def test_a_bar_shows_only_while_a_person_watches_stderr(
    monkeypatch: pytest.MonkeyPatch, stderr: bool, stdout: bool, output_on_stdout: bool, shown: bool
) -> None:
    monkeypatch.setattr(sys, "stderr", _Stream(stderr))
    monkeypatch.setattr(sys, "stdout", _Stream(stdout))
    assert common.watched(output_on_stdout) is shown


@pytest.fixture
def watching(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if a person watched stderr on a terminal, and any job were long."""
    monkeypatch.setattr(common, "watched", lambda output_on_stdout: True)
    monkeypatch.setattr(common, "PROGRESS_MINIMUM", 1)


def test_long_commands_show_progress_on_stderr_and_keep_stdout_clean(
    app: Flask, scim: Any, watching: None, tmp_path: Any
) -> None:
    create_user(scim, "alice@example.com")
    create_user(scim, "bob@example.com")
    listed = run(app, "users", "list", "--format", "csv")
    assert "exporting users" in listed.stderr
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert sorted(r["userName"] for r in rows) == ["alice@example.com", "bob@example.com"]

    exported = run(app, "audit", "--format", "json")
    assert "exporting audit events" in exported.stderr
    assert len(exported.stdout.splitlines()) == 3  # the token and two users, one per line

    path = tmp_path / "users.csv"
    path.write_text(listed.stdout, encoding="utf-8")
    assert "checking users" in run(app, "users", "import", str(path)).stderr

    AuditEvent.update(at=utcnow() - dt.timedelta(days=30)).execute()
    pruned = run(app, "audit", "prune", "--days", "7")
    assert "pruning audit events" in pruned.stderr
    assert "pruned 3 audit event(s)" in pruned.stdout

    lms = feed(
        app, "ws-token\n", "tenants", "set", "default", "LMS_TOKEN", "LMS_URL=http://lms.test"
    )
    assert lms.exit_code == 0, lms.output
    synced = run(app, "relay", "sync", "--all")
    assert "queueing for default" in synced.stderr
    assert synced.stdout.startswith("default: queued 2 change(s)")


def test_no_progress_when_nobody_watches(app: Flask, scim: Any) -> None:
    create_user(scim, "alice@example.com")
    assert run(app, "users", "list", "--format", "csv").stderr == ""
    assert run(app, "audit", "prune", "--days", "1").stderr == ""


def test_keys_and_lms_targets_list_in_every_format(app: Flask) -> None:
    run(app, "keys", "rotate")
    run(app, "keys", "rotate")
    keys = json.loads(run(app, "keys", "list", "--format", "json").stdout)
    assert [k["state"] for k in keys] == ["signing", "verifying"]
    assert keys[0]["verifyUntil"] is None
    assert ISO_Z.match(keys[1]["verifyUntil"])
    rows = list(csv.DictReader(io.StringIO(run(app, "keys", "list", "--format", "csv").stdout)))
    assert [r["kid"] for r in rows] == [k["kid"] for k in keys]
    assert run(app, "keys", "list").stdout.split()[:2] == ["kid", "alg"]

    (target,) = json.loads(run(app, "lms", "list", "--format", "json").stdout)
    assert (target["name"], target["url"], target["audiences"]) == ("default", None, None)
    (row,) = csv.DictReader(io.StringIO(run(app, "lms", "list", "--format", "csv").stdout))
    assert (row["name"], row["url"], row["audiences"], row["deadLetters"]) == (
        "default",
        "",
        "everyone",
        "0",
    )
    table = run(app, "lms", "list").stdout.splitlines()
    assert table[0].split()[:2] == ["name", "url"]
    assert "not configured" in table[1]
