"""The database handle: one `DatabaseProxy`, initialised from `DATABASE_URL`."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peewee
import psycopg2
from playhouse import db_url
from playhouse.pool import PooledDatabase, PooledPostgresqlDatabase
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, TRANSACTION_STATUS_INERROR

from app.config import Config
from app.errors import InvalidFilter
from scim_schemas import fold

log = logging.getLogger(__name__)

database = peewee.DatabaseProxy()

# WAL lets readers run beside the one writer; synchronous=NORMAL is durable in WAL mode against
# process crashes (a kill -9 loses nothing committed) and only an OS crash or power loss can drop
# the last transactions — FULL would fsync on every commit and halve write throughput.
# The page cache is per connection, and a gunicorn worker has one per thread: 8 MiB each keeps a
# worker near 100 MiB at a million users (32 MiB each made it 260) while the OS caches the file.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "cache_size": -8_000,
}


class _WriteTurn:
    """Whose turn it is to write: a thread lock (the threads of one process) and an `flock` on
    a file beside the database (gunicorn's worker processes).

    A waiting writer sleeps in the kernel and wakes the moment the holder commits. The lock is
    the OS's, so a killed process drops it; the file is opened once per process (after a fork,
    the parent's descriptor would share the lock instead of competing for it).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.threads = threading.Lock()
        self.held = threading.local()
        self.fd: int | None = None
        self.pid = 0

    def _file(self) -> int | None:
        if self.path is None:
            return None
        if self.fd is None or self.pid != os.getpid():
            self.fd = os.open(f"{self.path}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
            self.pid = os.getpid()
        return self.fd

    def take(self) -> None:
        self.threads.acquire()
        try:
            fd = self._file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self.threads.release()
            raise
        self.held.yes = True

    def give_back(self) -> None:
        if not getattr(self.held, "yes", False):
            return
        self.held.yes = False
        try:
            if self.fd is not None and self.pid == os.getpid():
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.threads.release()


class QueuedSqliteDatabase(peewee.SqliteDatabase):
    """SQLite whose write transactions queue for their turn instead of polling for the lock.

    Every transaction here begins IMMEDIATE (it takes SQLite's write lock at BEGIN). A second
    writer then waits in SQLite's busy handler, which retries in sleeps of up to 100 ms: under
    concurrent PATCHes those sleeps, not the work, made the slow tail. Taking a `_WriteTurn`
    before BEGIN hands the lock over as soon as the writer before commits or rolls back.
    """

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        self.turn = _WriteTurn(None if in_memory else Path(database))

    def begin(self, lock_type: str | None = None) -> None:
        self.turn.take()
        try:
            super().begin(lock_type)
        except BaseException:
            self.turn.give_back()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.turn.give_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.turn.give_back()


# A pooled connection handed back less than this long ago is handed out again without a check.
PING_AFTER_IDLE_SECONDS = 1.0


# A statement is prepared on the server the second time a process sends it (the first may be a
# one-off); a connection keeps the most recently used PREPARED_PER_CONNECTION of them.
PREPARED_PER_CONNECTION = 256
_SIGHTINGS_KEPT = 4096
_PREPARABLE = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"%[s%]")


def numbered(sql: str) -> str:
    """psycopg2's `%s` placeholders as PostgreSQL's `$1`, `$2`…, and `%%` as `%`."""
    counter = itertools.count(1)
    return _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(counter)}", sql)


class CheckedPool(PooledPostgresqlDatabase):
    """peewee's PostgreSQL pool, checking only connections that sat idle.

    peewee checks every connection it hands out with a `SELECT 1` round trip, once per request:
    a look-up's queries plus one. Under load a connection comes back within milliseconds of its
    last use, and psycopg2 marks one that failed as closed, so only a
    connection idle for `PING_AFTER_IDLE_SECONDS` is checked: after an outage (seconds long)
    every surviving connection has been idle that long, so the pool still heals by itself.
    """

    BEGIN_WITH_FIRST_STATEMENT = True  # (`begin`) for bench/breakdown.py's round-trip count

    def __init__(self, *args: Any, server_prepared: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._returned: dict[int, float] = {}
        self.server_prepared = server_prepared
        # Per connection (its key and backend pid): SQL → the name it is prepared under.
        self._statements: dict[tuple[int, int], OrderedDict[str, str]] = {}
        self._sighted: set[str] = set()  # sent once by this process
        self._unpreparable: set[str] = set()
        self._names = itertools.count(1)
        self._deferred = threading.local()  # a BEGIN waiting for its transaction's first statement

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        """Run `sql`; one this process sent before runs as `EXECUTE` of a statement prepared
        on this connection.

        PostgreSQL plans every statement it is sent: for the one-statement user read (five
        correlated subqueries) planning took 0.17 to 0.22 ms against 0.03 to 0.10 ms of execution.
        A prepared statement is planned once, and after five runs PostgreSQL keeps a generic
        plan when it costs no more than the custom ones. SQLite's driver already keeps its
        compiled statements per connection. Logged and counted as the SQL it stands for."""
        name = self._prepared(sql, params) if self.server_prepared and params else None
        begin = getattr(self._deferred, "begin", None)
        if name is None and begin is None:
            return super().execute_sql(sql, params)
        self._log_query(sql, params)
        sent = sql if name is None else f"EXECUTE {name} ({', '.join(['%s'] * len(params))})"
        if begin is not None:
            self._deferred.begin = None
            sent = f"{begin}; {sent}"
        with peewee.__exception_wrapper__:
            cursor = self.cursor()
            cursor.execute(sent, params or ())  # as peewee does: `%%` is a literal `%`
        return cursor

    def begin(self, isolation_level: Any = None) -> None:
        """Open a transaction with its first statement, in the same round trip.

        peewee sends `BEGIN` by itself: a round trip to the server before each transaction's
        first statement. Here it waits and goes with that statement (`BEGIN; …` is one simple
        query), and a transaction that sends nothing sends neither BEGIN nor COMMIT."""
        if self.is_closed():
            self.connect()
        level = isolation_level or self._isolation_level
        self._deferred.begin = (
            f"BEGIN TRANSACTION ISOLATION LEVEL {self._adapter.isolation_level_str(level)}"
            if level
            else "BEGIN"
        )

    def commit(self) -> None:
        if getattr(self._deferred, "begin", None) is not None:
            self._deferred.begin = None  # nothing was sent: nothing to commit
            return
        super().commit()

    def rollback(self) -> None:
        if getattr(self._deferred, "begin", None) is not None:
            self._deferred.begin = None
            return
        super().rollback()

    def _prepared(self, sql: str, params: Any) -> str | None:
        """The name `sql` is prepared under on this thread's connection, preparing it now if
        it was sent before; None to send it as it is."""
        if self.is_closed() or sql in self._unpreparable or not _PREPARABLE.match(sql):
            return None
        conn = self._state.conn
        key = (self.conn_key(conn), conn.get_backend_pid())
        names = self._statements.setdefault(key, OrderedDict())
        name = names.get(sql)
        if name is not None:
            names.move_to_end(sql)
            return name
        if sql not in self._sighted:
            if len(self._sighted) >= _SIGHTINGS_KEPT:
                self._sighted.clear()
            self._sighted.add(sql)
            return None
        return self._prepare(conn, names, sql)

    def _prepare(self, conn: Any, names: OrderedDict[str, str], sql: str) -> str | None:
        status = conn.get_transaction_status()
        if status == TRANSACTION_STATUS_INERROR:
            return None  # the statement fails as it is, with the error peewee maps
        name = f"lms_{next(self._names)}"
        statement = f"PREPARE {name} AS {numbered(sql)}"
        in_transaction = status != TRANSACTION_STATUS_IDLE
        with conn.cursor() as cursor:
            try:
                if in_transaction:  # a failed PREPARE must not abort the transaction
                    statement = f"SAVEPOINT lms_prepare; {statement}; RELEASE SAVEPOINT lms_prepare"
                cursor.execute(statement)
            except psycopg2.Error:
                # A parameter whose type PostgreSQL cannot infer: sent as it is from now on.
                if in_transaction:
                    cursor.execute("ROLLBACK TO SAVEPOINT lms_prepare")
                    cursor.execute("RELEASE SAVEPOINT lms_prepare")
                if len(self._unpreparable) < _SIGHTINGS_KEPT:
                    self._unpreparable.add(sql)
                return None
            names[sql] = name
            if len(names) > PREPARED_PER_CONNECTION:
                _, oldest = names.popitem(last=False)
                cursor.execute(f"DEALLOCATE {oldest}")
        return name

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        self._deferred.begin = None  # never carried over to this thread's next connection
        if not close_conn:
            self._returned[self.conn_key(conn)] = time.monotonic()
        super()._close(conn, close_conn)

    def _close_raw(self, conn: Any) -> None:
        key = self.conn_key(conn)
        self._returned.pop(key, None)
        for gone in [k for k in list(self._statements) if k[0] == key]:
            del self._statements[gone]
        super()._close_raw(conn)

    def _is_closed(self, conn: Any) -> bool:
        returned = self._returned.get(self.conn_key(conn))
        recent = returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_SECONDS
        if recent and not conn.closed and conn.get_transaction_status() == TRANSACTION_STATUS_IDLE:
            return False
        return super()._is_closed(conn)


def _fold(value: object) -> object:
    return fold(value) if isinstance(value, str) else value


def _private_sqlite_file(path: Path) -> None:
    """Create the database's folder (mode 0700) and file (0600) before SQLite does.

    SQLite creates the `-wal` and `-shm` files with the permissions of the database file, so all
    three stay the owner's: they hold names, e-mail addresses and token hashes. An existing file
    keeps its mode. If the file cannot be created, SQLite says why when it opens it (a 503)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def make_database(config: Config) -> peewee.Database:
    """A peewee database for the configured URL, pooled for PostgreSQL."""
    url = config.database_url
    path = config.sqlite_path()
    if path is not None:
        _private_sqlite_file(path)
    if url.startswith("sqlite"):
        # IMMEDIATE: a write transaction takes the write lock when it begins, so two writers
        # never both read and then deadlock on the upgrade.
        options = db_url.parse(url)
        db = QueuedSqliteDatabase(
            options.pop("database"),
            pragmas=SQLITE_PRAGMAS,
            lock_type="IMMEDIATE",
            check_same_thread=False,
            **options,
        )
        # SQLite's own lower() folds ASCII only; this one agrees with `scim_schemas.fold`.
        db.register_function(_fold, "scim_fold", 1, deterministic=True)
        return db
    if url.startswith(("postgres://", "postgresql://")):
        # A pool per process of `config.pool_size()` connections (one per gunicorn thread plus
        # two by default). A request waits up to DB_POOL_TIMEOUT for a free one, then gets 503.
        # The pool checks a connection that sat idle with `SELECT 1` when it is checked out and
        # drops it if the server went away, so after an outage the pool refills by itself.
        return CheckedPool(
            **db_url.parse(url),
            max_connections=config.pool_size(),
            stale_timeout=300,
            timeout=config.db_pool_timeout,
            connect_timeout=config.db_connect_timeout,
            server_prepared=config.db_server_prepared,
        )
    return db_url.connect(url)


_open: dict[str, peewee.Database] = {}


def init(config: Config) -> peewee.Database:
    """Point the proxy at the configured database, reusing one handle (and pool) per URL."""
    db = _open.get(config.database_url)
    if db is None:
        db = _open[config.database_url] = make_database(config)
    database.initialize(db)
    return db


def is_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


def release() -> None:
    """Give this thread's connection back to the pool at the end of a request (PostgreSQL).

    The pool closes instead of keeping a connection the server dropped. If even giving it back
    fails (a transaction left open, a broken socket), the connection is forgotten and closed,
    so the thread's next request starts from a fresh one and this answer is not turned into a 500.
    """
    db = database.obj
    if not isinstance(db, PooledDatabase) or db.is_closed():
        return
    try:
        db.close()
    except (peewee.DatabaseError, peewee.InterfaceError):
        log.warning("dropping a database connection that could not be returned to the pool")
        conn = db._state.conn  # peewee has no public "forget this thread's connection"
        db._state.reset()
        db._close(conn, close_conn=True)


def ping() -> None:
    """One `SELECT 1`: raises peewee.OperationalError/InterfaceError if the database is down."""
    database.execute_sql("SELECT 1").fetchone()


def locked(query: peewee.ModelSelect) -> peewee.ModelSelect:
    """Lock the selected rows until the transaction ends (SQLite's IMMEDIATE lock already does)."""
    return query.for_update() if is_postgres() else query


# A statement past what the database can compile, as opposed to a database that cannot answer:
# SQLite's parser stack (about 100 nested parentheses) and its other per-statement limits, and
# PostgreSQL's SQLSTATE class 54, program_limit_exceeded ("stack depth limit exceeded",
# "statement too complex"). Both arrive as OperationalError, which otherwise means an outage.
_SQLITE_TOO_COMPLEX = (
    "parser stack overflow",
    "expression tree is too large",
    "too many sql variables",
    "too many terms",
    "too many arguments",
)


def too_complex(exc: BaseException) -> bool:
    """Whether `exc` is the database refusing a statement as too large or too deep."""
    original = getattr(exc, "orig", exc)  # peewee keeps the driver's error as `orig`
    code = getattr(original, "pgcode", None)
    if isinstance(code, str):
        return code.startswith("54")
    message = str(original).lower()
    return any(fragment in message for fragment in _SQLITE_TOO_COMPLEX)


@contextlib.contextmanager
def filter_refusals() -> Iterator[None]:
    """Around a query built from a client's filter: a statement the database refuses as too
    complex is 400 `invalidFilter` (RFC 7644 §3.12), never 503 "database unavailable" (a
    retry would fail the same way). Within the default FILTER_MAX_NODES/FILTER_MAX_DEPTH no
    filter gets here; raised limits can."""
    try:
        yield
    except peewee.DatabaseError as exc:
        if not too_complex(exc):
            raise
        raise InvalidFilter(
            "The filter is too complex for the database; split it or nest it less deeply."
        ) from exc
