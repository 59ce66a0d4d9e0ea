"""`/admin/connections`: per token and OAuth client, the last request, the last day's requests
and errors by status, and the last 10 errors with their SCIM detail (m0020, `app.connections`),
written in batches off the request path and bounded."""

from __future__ import annotations

import base64
import datetime as dt
import html
import re

from flask import Flask
from flask.testing import FlaskClient

from app import connections, runtime
from app.store import outcomes
from app.store.models import RequestError, RequestTally, utcnow
from tests.helpers import Clock, Scim, create_user, last_line, run, sign_in, user_body


def _page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.get_data(as_text=True))
    return html.unescape(response.get_data(as_text=True))


def _row(page: str, name: str) -> str:
    return page.split(f">{name}</a>")[1].split("</tr>")[0]


def test_a_tokens_requests_and_errors_with_their_scim_detail(
    signed_in: FlaskClient, scim: Scim
) -> None:
    create_user(scim, "ana@example.com")
    assert scim.post("/Users", user_body("ANA@example.com")).status_code == 409
    assert scim.get(f"/Users/{'0' * 32}").status_code == 404
    assert scim.get("/Users?filter=userName%20zz%20%22x%22").status_code == 400
    assert scim.get("/Users").status_code == 200

    listing = _page(signed_in, "/admin/connections")
    row = _row(listing, "test-idp")
    assert "API token" in row
    assert re.search(r'<td class="num">5</td>\s*<td class="num bad">3</td>', row), row
    assert "just now" in row

    page = _page(signed_in, "/admin/connection?name=test-idp")
    assert '<strong>5</strong> requests and <strong class="bad">3</strong> errors' in page
    statuses = page.split('id="by-status"')[1].split("</table>")[0]
    for status, n in (("200", 1), ("201", 1), ("400", 1), ("404", 1), ("409", 1)):
        assert re.search(rf">{status}</td><td class=\"num\">{n}</td>", statuses), status
    errors = page.split('id="errors"')[1]
    assert "POST /scim/v2/Users" in errors
    assert "uniqueness" in errors
    assert "ANA@example.com" in errors or "userName" in errors  # the detail the IdP got
    assert "invalidFilter" in errors
    assert f"GET /scim/v2/Users/{'0' * 32}" in errors
    assert errors.index("invalidFilter") < errors.index("uniqueness")  # newest first
    assert "lmsscim_" in page  # the token's prefix and state


def test_an_oauth_clients_traffic_is_its_own(
    app: Flask, signed_in: FlaskClient, token: str
) -> None:
    out = run(app, "clients", "create", "entra").stdout.splitlines()
    creds = dict(line.split("=", 1) for line in out)
    pair = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
    granted = signed_in.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {pair}"},
    )
    assert granted.status_code == 200, granted.get_json()
    oauth = Scim(signed_in, granted.get_json()["access_token"])
    assert oauth.get(f"/Groups/{'1' * 32}").status_code == 404
    listing = _page(signed_in, "/admin/connections")
    row = _row(listing, "oauth:entra")
    assert "OAuth client" in row
    page = _page(signed_in, "/admin/connection?name=oauth%3Aentra")
    assert creds["client_id"] in page
    assert f"GET /scim/v2/Groups/{'1' * 32}" in page
    assert "test-idp" in listing  # the token, unused, is listed too
    assert "never" in _row(listing, "test-idp")


def test_a_refused_token_is_not_counted_and_unknown_names_are_404(
    signed_in: FlaskClient, client: FlaskClient
) -> None:
    assert Scim(client, "lmsscim_wrong").get("/Users").status_code == 401
    connections.of(client.application).flush()
    assert RequestTally.select().count() == 0
    for path in ("/admin/connection?name=nobody", "/admin/connection"):
        response = signed_in.get(path)
        assert response.status_code == 404
        assert response.mimetype == "text/html"


def test_counts_are_written_in_batches_not_per_request(app: Flask, scim: Scim) -> None:
    recorder = connections.of(app)
    recorder.flush_seconds = 3600
    scim.get("/Users")  # the first request of a process is written at once
    assert RequestTally.get().n == 1
    for _ in range(3):
        scim.get("/Users")
    assert RequestTally.get().n == 1  # held in memory
    recorder.flush()
    assert RequestTally.get().n == 4  # one row per credential, hour and status


def test_stored_outcomes_are_bounded(app: Flask, signed_in: FlaskClient, scim: Scim) -> None:
    for n in range(outcomes.ERRORS_KEPT + 5):
        assert scim.get(f"/Users/{n:032d}").status_code == 404
    connections.of(app).flush()
    assert RequestError.select().count() == outcomes.ERRORS_KEPT
    page = _page(signed_in, "/admin/connection?name=test-idp")
    assert page.count("GET /scim/v2/Users/") == 10  # the last 10
    assert f"GET /scim/v2/Users/{outcomes.ERRORS_KEPT + 4:032d}" in page

    # Counts older than a day leave the 24 h figures; older than TALLY_DAYS, the table.
    now = utcnow()
    old = {
        (1, "test-idp", outcomes.hour_of(now) - dt.timedelta(hours=30), 500): (7, now),
        (1, "test-idp", outcomes.hour_of(now) - dt.timedelta(days=9), 503): (2, now),
    }
    outcomes.write(old, [])
    found = outcomes.connection("test-idp")
    assert found is not None
    assert 500 not in found.by_status
    assert 503 not in found.by_status
    assert outcomes.prune() == 1
    assert RequestTally.select().where(RequestTally.status == 500).count() == 1


def test_an_oauth_clients_token_requests_and_refused_secrets_are_its_own(
    app: Flask, signed_in: FlaskClient
) -> None:
    out = run(app, "clients", "create", "okta").stdout.splitlines()
    creds = dict(line.split("=", 1) for line in out)

    def ask(secret: str) -> int:
        pair = base64.b64encode(f"{creds['client_id']}:{secret}".encode()).decode()
        return signed_in.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {pair}"},
        ).status_code

    assert ask(creds["client_secret"]) == 200
    assert ask("an-expired-secret") == 401
    unknown = base64.b64encode(b"no-such-client:x").decode()
    refused = signed_in.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {unknown}"},
    )
    assert refused.status_code == 401
    page = _page(signed_in, "/admin/connection?name=oauth%3Aokta")
    assert '<strong>2</strong> requests and <strong class="bad">1</strong> error' in page
    errors = page.split('id="errors"')[1]
    assert "POST /oauth/token" in errors
    assert "invalid_client" in errors
    assert "Client authentication failed." in errors
    assert "no-such-client" not in _page(signed_in, "/admin/connections")


def test_the_overview_warns_about_failing_connections_and_tokens_link_to_theirs(
    signed_in: FlaskClient, scim: Scim
) -> None:
    assert "failed in the last 24 h" not in _page(signed_in, "/admin/")
    scim.get("/Users")
    assert scim.get(f"/Users/{'0' * 32}").status_code == 404
    overview = _page(signed_in, "/admin/")
    assert "1 of 2 requests by “test-idp” failed in the last 24 h." in overview
    assert 'href="/admin/connection?name=test-idp">See why</a>' in overview
    tokens = _page(signed_in, "/admin/tokens")
    assert 'href="/admin/connection?name=test-idp"' in tokens


def test_an_expired_token_is_counted_for_its_name(
    app: Flask, signed_in: FlaskClient, clock: Clock
) -> None:
    secret = last_line(run(app, "tokens", "create", "okta-old", "--expires-in", "1d"))
    okta = Scim(signed_in, secret)
    assert okta.get("/Users").status_code == 200
    clock.advance(days=2)
    assert okta.get("/Users").status_code == 401  # from the process's cache
    connections.of(app).flush()
    runtime.of(app).tokens.clear()
    assert okta.get("/Users").status_code == 401  # from the database
    assert sign_in(signed_in).status_code == 302  # two days on: the session has ended
    page = _page(signed_in, "/admin/connection?name=okta-old")
    errors = page.split('id="errors"')[1]
    assert errors.count("The token has expired or was revoked.") == 2
    assert re.search(r">401</td><td class=\"num\">2</td>", page.split('id="by-status"')[1])


def test_failures_held_between_writes_are_bounded(app: Flask, scim: Scim) -> None:
    recorder = connections.of(app)
    scim.get("/Users")  # the first write, at once
    recorder.flush_seconds = 3600
    for n in range(connections.MAX_FAILURES + 30):
        recorder.note(1, "test-idp", 404, ("GET", f"/scim/v2/Users/{n}", None, "gone", None))
    assert len(recorder._failures) == connections.MAX_FAILURES
    assert recorder._failures[-1].path == f"/scim/v2/Users/{connections.MAX_FAILURES + 29}"
    recorder.flush()
    counted = RequestTally.get(RequestTally.status == 404)
    assert counted.n == connections.MAX_FAILURES + 30  # every request counted
    assert RequestError.select().count() == outcomes.ERRORS_KEPT
