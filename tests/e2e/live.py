"""The real server, started the way `make run` does, against SQLite and PostgreSQL: plain helpers
for the e2e tests (their fixtures, in tests/e2e/conftest.py, are built on these).

`Servers.launch` migrates a fresh database (`lms-scim db upgrade`), issues a token
(`lms-scim tokens create e2e`), then starts gunicorn with the gthread workers `make run` uses. The
console scripts are taken from the directory of `sys.executable`, so the tests run in whichever
virtual environment runs pytest (and fail if the package is not installed there, as a deployment
would). PostgreSQL databases are schemas of their own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import trustme
from scim2_client import BaseSyncSCIMClient, RequestNetworkException

from tests.helpers import (
    OPERATOR,
    PASSWORD,
    PG_DSN,
    Scim,
    create_schema,
    drop_schema,
    postgres_or_skip,
    schema_url,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 20.0
STOP_SECONDS = 15.0
CLI_SECONDS = 60.0
SCIM_MEDIA_TYPE = "application/scim+json"
# The e2e tests speak to the server from outside: the URNs are spelled out, not imported.
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"

# Every variable `Config.from_env` reads: the server gets only the ones set here, so a developer's
# shell (say, SCIM_BASE_URL or PASSWORD_POLICY) cannot change what the tests see.
_CONFIG_VARS = (
    "DATABASE_URL",
    "HOST",
    "PORT",
    "WEB_CONCURRENCY",
    "SCIM_BASE_URL",
    "MAX_BODY_BYTES",
    "DEFAULT_USER_TYPE",
    "DEFAULT_TIMEZONE",
    "UNIQUE_EMAILS",
    "PASSWORD_POLICY",
    "HASH_CONCURRENCY",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "FILTER_MAX_LENGTH",
    "FILTER_MAX_NODES",
    "FILTER_MAX_DEPTH",
    "LOG_LEVEL",
    "WEB_THREADS",
    "DB_POOL_SIZE",
    "DB_POOL_TIMEOUT",
    "DB_CONNECT_TIMEOUT",
    "MAX_JSON_DEPTH",
    "MAX_MULTI_VALUES",
    "MAX_MEMBERS_PER_OPERATION",
    "RATE_LIMIT_PER_TOKEN",
    "RATE_LIMIT_PER_ADDRESS",
    "BAD_TOKEN_LIMIT",
    "RATELIMIT_STORAGE_URI",
    "TRUSTED_PROXY_HOPS",
    "METRICS_TOKEN",
    "LOG_FORMAT",
    "PROMETHEUS_MULTIPROC_DIR",
    "ADMIN_COOKIE_SECURE",
    "ADMIN_SESSION_HOURS",
    "ADMIN_IDLE_MINUTES",
    "ADMIN_SIGNIN_PER_ADDRESS",
    "ADMIN_SIGNIN_FAILURES_PER_NAME",
)


def free_port() -> int:
    """A port the OS considers free right now (bind to port 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def console_script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed beside {sys.executable}: run `make dev` first")
    return str(path)


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class LiveServer:
    """A running `gunicorn 'app:create_app()'` and what it was started with."""

    backend: str
    database_url: str
    port: int
    token: str
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    schema: str | None = None
    cli_output: list[str] = field(default_factory=list)
    name: str = "server"
    workers: int = 2
    threads: int = 4
    # A shell command line to run instead of gunicorn with `make run`'s flags (the Procfile's
    # `web:`), by `sh -c` with the virtual environment's bin first on PATH.
    command: str | None = None
    # The CA that signed the certificate of a server serving TLS itself (`Servers.tls`).
    ca: Path | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ca else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> str | bool:
        """`requests`' `verify=`: the test's own CA for a TLS server, else the default."""
        return str(self.ca) if self.ca else True

    @property
    def scim_url(self) -> str:
        return f"{self.base_url}/scim/v2"

    def headers(self) -> dict[str, str]:
        """What a SCIM client sends with each request: the bearer token and the media type."""
        return {"Authorization": f"Bearer {self.token}", "Content-Type": SCIM_MEDIA_TYPE}

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def sqlite_path(self) -> Path | None:
        prefix = "sqlite:///"
        return Path(self.database_url[len(prefix) :]) if self.backend == "sqlite" else None

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows from the server's database, read directly (`%s` placeholders on both)."""
        if self.sqlite_path is not None:
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.sqlite_path, timeout=30)) as conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()
        conn = _postgres_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'SET search_path TO "{self.schema}"')
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def cli(self, *args: str, typed: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `lms-scim ARGS` as `make run` would, failing the test if it fails.

        `typed` is what a person types at its prompts (one answer a line). The command then runs
        without a controlling terminal, so a hidden prompt reads it from stdin rather than from
        the terminal running the tests."""
        result = subprocess.run(
            [console_script("lms-scim"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_SECONDS,
            check=False,
            input=typed,
            start_new_session=typed is not None,
        )
        self.cli_output.append(f"$ lms-scim {' '.join(args)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            pytest.fail(
                f"`lms-scim {' '.join(args)}` exited with {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def tenant(self, slug: str, name: str | None = None) -> str:
        """Create tenant `slug` (`tenants create`) and issue its IdP's token (`tokens create
        --tenant`), as an operator would; the token."""
        self.cli("tenants", "create", slug, "--name", name or slug.title())
        created = self.cli("tokens", "create", f"{slug}-idp", "--tenant", slug)
        return created.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        """Start gunicorn (its settings file, `gunicorn.conf.py`, is read from ROOT as in
        production); the log is appended to, so it survives a restart."""
        argv = [
            console_script("gunicorn"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(self.threads),
            "app:create_app()",
        ]
        env = self.env
        if self.command is not None:
            argv = ["sh", "-c", self.command]
            env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: the workers can be killed with the master if it hangs.
                start_new_session=True,
            )

    def wait_until_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"gunicorn exited with {self.process.returncode} before serving:\n"
                    f"{_tail(self.log)}"
                )
            try:
                response = requests.get(f"{self.base_url}/healthz", timeout=1, verify=self.verify)
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                last_error = type(exc).__name__
            time.sleep(0.1)
        pytest.fail(
            f"/healthz did not answer 200 within {STARTUP_SECONDS:.0f} s ({last_error}):\n"
            f"{_tail(self.log)}"
        )

    def worker_pids(self) -> list[int]:
        """The gunicorn master's children (its workers), from /proc."""
        assert self.process is not None
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def wait_for_workers(self, count: int) -> list[int]:
        """Worker pids once `count` are alive and booted (gunicorn respawns killed ones)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) >= count:
                return pids
            time.sleep(0.05)
        pytest.fail(f"gunicorn did not have {count} workers within {STARTUP_SECONDS:.0f} s")

    def kill(self) -> None:
        """`kill -9` of the master and every worker (its process group), as a crash would."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_SECONDS)

    def stop(self) -> None:
        """SIGTERM by process id, wait, then SIGKILL the master and its workers if still alive."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if self.command is not None:  # the shell may not pass SIGTERM on: its whole group
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_SECONDS)


def _server_env(
    database_url: str, port: int, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CONFIG_VARS}
    env.update(DATABASE_URL=database_url, HOST="127.0.0.1", PORT=str(port), LOG_LEVEL="WARNING")
    env.update(extra or {})
    return env


def _postgres_connect() -> Any:
    import psycopg2

    return psycopg2.connect(PG_DSN, connect_timeout=3)


def _create_schema() -> str:
    """A private PostgreSQL schema; skip loudly if unreachable (fail if REQUIRE_POSTGRES=1)."""
    conn = postgres_or_skip("e2e PostgreSQL tests")
    try:
        return create_schema(conn, "lms_scim_e2e")
    finally:
        conn.close()


def _drop_schema(schema: str) -> None:
    conn = postgres_or_skip("e2e PostgreSQL tests")
    try:
        drop_schema(conn, schema)
    finally:
        conn.close()


class Servers:
    """Starts real servers on fresh databases, and stops them (and drops their schemas) after.

    `database(backend)` makes a database (a PostgreSQL schema, or a SQLite file);
    `launch(...)` starts one gunicorn on it, migrating and issuing a token unless given one —
    launch several on one database URL with the first one's token to get several instances.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[LiveServer] = []
        self.schemas: list[str] = []

    def database(self, backend: str) -> tuple[str, str | None]:
        """A new, empty database: (DATABASE_URL, PostgreSQL schema or None)."""
        if backend == "postgres":
            schema = _create_schema()
            self.schemas.append(schema)
            return schema_url(schema), schema
        return f"sqlite:///{self.workdir / f'e2e-{uuid.uuid4().hex[:8]}.db'}", None

    def prepare(
        self,
        backend: str,
        database: tuple[str, str | None] | None = None,
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        **fields: Any,
    ) -> LiveServer:
        """A server on `database` (else a new one) and a free port, neither migrated nor started;
        stopped with the others in any case. `fields` are `LiveServer`'s (workers, command, ca)."""
        database_url, schema = database or self.database(backend)
        port = free_port()
        name = name or f"server-{len(self.started)}"
        # Metrics files in the test's folder, not a temporary one a kill -9 would leave behind.
        env = {"PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"metrics-{name}"), **(env or {})}
        server = LiveServer(
            backend,
            database_url,
            port,
            "",
            _server_env(database_url, port, env),
            self.workdir,
            None,
            schema,
            name=name,
            **fields,
        )
        self.started.append(server)
        return server

    def launch(
        self,
        backend: str,
        database: tuple[str, str | None] | None = None,
        *,
        token: str | None = None,
        env: dict[str, str] | None = None,
        name: str | None = None,
        workers: int = 2,
        url: str | None = None,
        command: str | None = None,
    ) -> LiveServer:
        """Start a server (gunicorn gthread, 4 threads a worker) and wait for /healthz.

        `url` overrides the DATABASE_URL the server gets (say, a proxy in front of the
        database), while migrations and the token use the database's own URL. `command` is a
        shell command line that starts it instead (`LiveServer.command`), with `PORT` set.
        """
        server = self.prepare(
            backend, database, name=name, env=env, workers=workers, command=command
        )
        if token is None:
            server.cli("db", "upgrade")
            server.token = server.cli("tokens", "create", "e2e").stdout.strip().splitlines()[-1]
        else:
            server.token = token
        if url is not None:
            server.env["DATABASE_URL"] = url
        server.start()
        server.wait_until_healthy()
        return server

    def tls(self, backend: str, name: str, env: dict[str, str] | None = None) -> LiveServer:
        """A server that will serve TLS itself as docs/https.md says — `.venv/bin/gunicorn
        --certfile … --keyfile … 'app:create_app()'`, `gunicorn.conf.py` binding HOST:PORT — with
        a certificate for 127.0.0.1 and localhost signed by a CA of its own (`trustme`), on a
        new database.

        Neither migrated nor started, and no token: the caller runs the commands a guide gives
        (`server.cli(...)`), then `server.start()` and `server.wait_until_healthy()`."""
        folder = self.workdir / name
        folder.mkdir()
        ca, certfile, keyfile = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
        authority = trustme.CA()
        authority.cert_pem.write_to_path(str(ca))
        issued = authority.issue_cert("127.0.0.1", "localhost")
        for blob in issued.cert_chain_pems:
            blob.write_to_path(str(certfile), append=True)
        issued.private_key_pem.write_to_path(str(keyfile))
        # exec: the shell becomes gunicorn, so the process id the test stops is gunicorn's.
        gunicorn, cert, key = (
            shlex.quote(str(p)) for p in (console_script("gunicorn"), certfile, keyfile)
        )
        command = f"exec {gunicorn} --certfile {cert} --keyfile {key} 'app:create_app()'"
        return self.prepare(backend, name=name, env=env, command=command, ca=ca)

    def close(self) -> None:
        for server in self.started:
            server.stop()
        for schema in self.schemas:
            _drop_schema(schema)


@contextlib.contextmanager
def servers_in(workdir: Path) -> Iterator[Servers]:
    servers = Servers(workdir)
    try:
        yield servers
    finally:
        servers.close()


class HttpResponse:
    """A `requests` response read as a Flask test response is (`status_code`, `headers`,
    `mimetype`, `get_json`, `get_data`), so one test reads the answers of both alike."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers

    @property
    def mimetype(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def get_data(self, as_text: bool = False) -> bytes | str:
        return self.response.text if as_text else self.response.content

    def get_json(self, silent: bool = False) -> Any:
        """As werkzeug's: None unless the media type is JSON (`application/json`, `…+json`)."""
        if not (self.mimetype == "application/json" or self.mimetype.endswith("+json")):
            return None
        try:
            return self.response.json()
        except ValueError:
            if not silent:
                raise
            return None


class HttpClient:
    """What `tests.helpers.Scim` uses of Flask's test client (`open`), over real HTTP to a
    live server, on one keep-alive session."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def open(
        self,
        path: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        query_string: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> HttpResponse:
        response = self.session.request(
            method,
            f"{self.base_url}{path}",
            headers=headers,
            params=query_string,
            timeout=30,
            **kwargs,
        )
        return HttpResponse(response)


@dataclass
class TwoTenants:
    """A live server with two tenants, the default one (`home`) and `acme`, each with its IdP's
    token, as SCIM clients (`tests.helpers.Scim` over `HttpClient`)."""

    server: LiveServer
    home: Scim
    acme: Scim

    @classmethod
    def launch(cls, servers: Servers, backend: str) -> TwoTenants:
        server = servers.launch(backend, name=f"two-tenants-{backend}")
        client = HttpClient(server.base_url)
        return cls(server, Scim(client, server.token), Scim(client, server.tenant("acme")))


ADMIN_COOKIE = "lms_scim_admin"


class Visitor:
    """A browser on /admin that keeps the session cookie itself: `requests` would not send a
    `Secure` cookie back over plain http, and the tests need to replay old cookies. Over https
    it trusts the server's own CA."""

    def __init__(self, server: LiveServer, **headers: str) -> None:
        self.base_url = server.base_url
        self.verify = server.verify
        self.headers = headers
        self.cookie: str | None = None
        self.set_cookies: list[str] = []

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(self.headers)
        if self.cookie:
            headers["Cookie"] = f"{ADMIN_COOKIE}={self.cookie}"
        response = requests.request(
            method,
            f"{self.base_url}{path}",
            headers=headers,
            allow_redirects=False,
            timeout=15,
            verify=self.verify,
            **kwargs,
        )
        set_cookie = response.headers.get("Set-Cookie")
        if set_cookie:
            self.set_cookies.append(set_cookie)
            match = re.match(rf"{ADMIN_COOKIE}=([^;]*)", set_cookie)
            assert match, set_cookie
            self.cookie = match[1] or None
        return response

    def csrf(self, path: str = "/admin/login") -> str:
        """The CSRF token of the form on an /admin page, as a browser would submit it."""
        page = self.request("GET", path)
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match, f"{page.status_code}: {page.text[:500]}"
        return match[1]

    def sign_in(
        self, query: str = "", name: str = OPERATOR, password: str = PASSWORD
    ) -> requests.Response:
        data = {"csrf": self.csrf(), "name": name, "password": password}
        return self.request("POST", f"/admin/login{query}", data=data)

    def sign_out(self) -> requests.Response:
        return self.request("POST", "/admin/logout", data={"csrf": self.csrf("/admin/")})

    def signed_in(self) -> bool:
        status = self.request("GET", "/admin/").status_code
        assert status in (200, 302)
        return status == 200


class RequestsSCIMClient(BaseSyncSCIMClient):
    """A scim2-client engine over `requests`, for a server listening on a real socket.

    scim2-client's own network engine needs httpx2, which is not a dependency here; this one
    implements the three hooks an engine provides (send, parse, stay under the base URL).
    """

    def __init__(self, session: requests.Session, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.base_url = base_url.rstrip("/")

    def _url(self, url: str) -> str:
        return url if urlsplit(url).scheme else f"{self.base_url}/{url.lstrip('/')}"

    def _stays_under_base_url(self, endpoint: str) -> bool:
        base, target = urlsplit(self.base_url), urlsplit(self._url(endpoint))
        return (
            (target.scheme, target.netloc) == (base.scheme, base.netloc)
            and f"{target.path}/".startswith(f"{base.path}/")
            and not {".", ".."} & set(target.path.split("/"))
        )

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if "content" in kwargs:
            kwargs["data"] = kwargs.pop("content")
        try:
            return self.session.request(method, self._url(url), timeout=30, **kwargs)
        except requests.RequestException as exc:
            error = RequestNetworkException()
            error.add_note(str(exc))
            raise error from exc


def unique_name() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}@example.com"


def user_body(user_name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "schemas": [CORE_USER],
        "userName": user_name,
        "externalId": f"ext-{user_name}",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "active": True,
    }
    body.update(extra)
    return body


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}
