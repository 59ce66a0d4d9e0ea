"""Rate limits under `/scim/`: per bearer token, per client address, and on guessed tokens.

- Every `/scim/` request counts against `RATE_LIMIT_PER_TOKEN` (keyed by a hash of the
  `Authorization` header, never the secret) and `RATE_LIMIT_PER_ADDRESS`; over either, the
  answer is 429 in the SCIM error envelope with `Retry-After` (fixed windows).
- A client address whose requests carried `BAD_TOKEN_LIMIT` invalid tokens is braked until the
  window ends: its requests' tokens are checked before anything else, a valid one is served
  and anything else gets 429 instead of 401. An IdP behind the same NAT or proxy as a guesser
  must never be locked out, and it may not be: a token only this process's cache knew would
  leave it after `TOKEN_CACHE_SECONDS` (and be unknown to the other workers), so an uncached
  token is looked up as usual (the one indexed query every request makes). The principal is
  kept in `g` and the endpoint does not look it up again. No thread sleeps: the brake is a
  counter.
- Counters live in `RATELIMIT_STORAGE_URI`: `memory://` (default; per process, so the
  effective limit is workers times the limit) or `redis://host:6379`, shared by every
  instance. If the storage fails, requests pass (availability first), it is logged, and the
  storage is left alone for `STORAGE_RETRY_SECONDS` so no request waits on a dead one.
- The client address is `REMOTE_ADDR`, or with `TRUSTED_PROXY_HOPS=n` the n-th address from the
  right of `X-Forwarded-For` (werkzeug's ProxyFix, installed by `create_app`). A request that
  carries `X-Forwarded-For` while `TRUSTED_PROXY_HOPS=0` is logged as a warning once per app (one
  app per gunicorn worker): every client then shares the proxy's address, its rate limit and its
  brake.
- `/admin` sign-ins go through the same counters (`sign_in_attempt`, `sign_in_failed`):
  `ADMIN_SIGNIN_PER_ADDRESS` attempts per client address, `ADMIN_SIGNIN_FAILURES_PER_NAME`
  failures per typed name, known to us or not, so the back-off tells a guesser nothing.

The counting is the `limits` library — the engine flask-limiter runs on, with the same
storage URIs — called directly: flask-limiter's per-request limit resolution cost ~0.45 ms a
request here, the three counter operations ~0.02 ms.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time

import limits
from flask import Flask, Response, g, request
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app import auth, runtime
from app.config import Config
from app.errors import TooManyRequests, Unauthorized, is_scim_path

log = logging.getLogger(__name__)

PREFIX = "lms-scim"
STORAGE_RETRY_SECONDS = 5.0
EXTENSION = "lms_scim_ratelimits"


def client_address() -> str:
    return request.remote_addr or "unknown"


def token_key() -> str:
    """The `Authorization` header's SHA-256 (shortened): one bucket per token, no secret kept."""
    header = request.headers.get("Authorization", "")
    return hashlib.sha256(header.encode("utf-8", "replace")).hexdigest()[:32]


def _outside_scim() -> bool:
    return not is_scim_path(request.path)


class LazyMemoryStorage(MemoryStorage):
    """`memory://` counters that expire when they are next read, and in a sweep at most once
    per `SWEEP_SECONDS` from the request that finds one due, instead of limits' expiry timer:
    `MemoryStorage` starts a thread on every hit that finds its 10 ms timer run out, so a
    process serving requests more than 10 ms apart started one per request and waited for it
    to be scheduled (0.1 to 3 ms a request on a busy 2-CPU machine, `bench/profile.py
    --breakdown`). The counts, windows and keys are limits' own
    (`tests/unit/test_ratelimit_storage.py` pins the attributes used)."""

    SWEEP_SECONDS = 60.0

    def __init__(self, uri: str | None = None, **options: str) -> None:
        super().__init__(uri, **options)
        self._next_sweep = time.time() + self.SWEEP_SECONDS

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        self.get(key)  # a window that ended is dropped here
        self._sweep()
        with self.locks[key]:
            self.storage[key] += amount
            if self.storage[key] == amount:
                self.expirations[key] = time.time() + expiry
        return self.storage.get(key, 0)

    def _sweep(self) -> None:
        """Forget the windows that ended (keys no request reads again), now and then."""
        now = time.time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_SECONDS
        for key, ends in list(self.expirations.items()):
            if ends <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
                self.locks.pop(key, None)


class RateLimits:
    """The three limits over one counter storage, as before/after-request hooks."""

    def __init__(self, config: Config) -> None:
        uri = config.ratelimit_storage_uri
        # A Redis that does not answer must cost a request milliseconds, not seconds.
        options = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
        storage = (
            LazyMemoryStorage(uri)
            if uri.split("://", 1)[0] == "memory"
            else storage_from_string(uri, **(options if uri.startswith("redis") else {}))
        )
        self.window = FixedWindowRateLimiter(storage)
        self.per_token = limits.parse(config.rate_limit_per_token)
        self.per_address = limits.parse(config.rate_limit_per_address)
        self.bad_tokens = limits.parse(config.bad_token_limit)
        self.sign_ins = limits.parse(config.admin_signin_per_address)
        self.sign_in_failures = limits.parse(config.admin_signin_failures_per_name)
        self._skip_until = 0.0
        self._proxy_unnoticed = True
        self._lock = threading.Lock()

    def _storage_failed(self) -> None:
        log.warning("rate-limit storage unavailable; limits skipped for a few seconds")
        self._skip_until = time.monotonic() + STORAGE_RETRY_SECONDS

    def _wait(self, item: limits.RateLimitItem, *key: str) -> int:
        reset = self.window.get_window_stats(item, PREFIX, *key).reset_time
        return math.ceil(reset - time.time())

    def _retry_after(self, item: limits.RateLimitItem, *key: str) -> int:
        """Seconds until `key`'s window of `item` ends; the window's length when the storage
        cannot say."""
        try:
            return max(1, self._wait(item, *key))
        except Exception:
            return item.get_expiry()

    def check(self) -> None:
        """before_request: let a braked address through with a valid token only, then count the
        request against its token and its address."""
        if _outside_scim() or time.monotonic() < self._skip_until:
            return
        address = client_address()
        try:
            braked = not self.window.test(self.bad_tokens, PREFIX, "bad-token", address)
        except Exception:  # the storage is down: serve the request, say so
            self._storage_failed()
            return
        if braked:
            self._only_valid_tokens(address)
        refusal: TooManyRequests | None = None
        try:
            for item, scope, key in (
                (self.per_token, "token", token_key()),
                (self.per_address, "address", address),
            ):
                if not self.window.hit(item, PREFIX, scope, key):
                    refusal = TooManyRequests(
                        f"Too many requests from this {scope}; retry later.",
                        self._wait(item, scope, key),
                    )
                    break
        except Exception:
            self._storage_failed()
            return
        if refusal is not None:
            raise refusal

    def _only_valid_tokens(self, address: str) -> None:
        """A braked address: its token is verified now (from the cache, or the one query the
        endpoint would make) and kept in `g`; without a valid one the answer is 429, not 401.
        A database outage propagates as itself (503): it says nothing about the token."""
        try:
            current = runtime.current()
            g.principal = auth.verify(
                request.headers.get("Authorization"),
                current.tokens,
                current.access_tokens,
                current.entra,
            )
        except Unauthorized:
            raise TooManyRequests(
                "Too many requests with an invalid token from this address; retry later.",
                self._retry_after(self.bad_tokens, "bad-token", address),
            ) from None

    def notice_untrusted_proxy(self) -> None:
        """before_request with `TRUSTED_PROXY_HOPS=0`: the first request relayed by a proxy is
        logged as a warning (then never again), since every client now has the proxy's address:
        one guesser brakes every IdP behind it, and they share one address limit."""
        if not self._proxy_unnoticed or "X-Forwarded-For" not in request.headers:
            return
        with self._lock:
            first, self._proxy_unnoticed = self._proxy_unnoticed, False
        if first:
            log.warning(
                "requests carry X-Forwarded-For but TRUSTED_PROXY_HOPS=0: every client counts as "
                "the proxy at %s, so one client's bad tokens brake all of them; set "
                "TRUSTED_PROXY_HOPS to the number of proxies in front of the service",
                request.remote_addr,
            )

    def count_bad_token(self, response: Response) -> Response:
        """after_request: a 401 to a request that presented a token counts against its address."""
        if (
            response.status_code == 401
            and "Authorization" in request.headers
            and not _outside_scim()
            and time.monotonic() >= self._skip_until
        ):
            try:
                self.window.hit(self.bad_tokens, PREFIX, "bad-token", client_address())
            except Exception:
                self._storage_failed()
        return response

    def _within(self, count: bool, item: limits.RateLimitItem, *key: str) -> bool:
        """Whether `key` is within `item` (counting this request when `count`); True while the
        storage is down, as for every limit."""
        if time.monotonic() < self._skip_until:
            return True
        try:
            if count:
                return self.window.hit(item, PREFIX, *key)
            return self.window.test(item, PREFIX, *key)
        except Exception:
            self._storage_failed()
            return True

    def allows_credentials(self, address: str) -> bool:
        """The token endpoint: False while the address is braked for bad credentials (the same
        brake as bad SCIM tokens)."""
        return self._within(False, self.bad_tokens, "bad-token", address)

    def failed_credentials(self, address: str) -> None:
        self._within(True, self.bad_tokens, "bad-token", address)

    def credentials_retry_after(self, address: str) -> int:
        """`Retry-After` for a braked address: when its window of failures ends."""
        return self._retry_after(self.bad_tokens, "bad-token", address)

    def allows_client(self, identifier: str) -> bool:
        """Count a token request against its client, with the per-token SCIM limit."""
        return self._within(True, self.per_token, "client", identifier)

    def client_retry_after(self, identifier: str) -> int:
        """`Retry-After` for a client over its limit: when its window ends."""
        return self._retry_after(self.per_token, "client", identifier)

    def sign_in_attempt(self, address: str, name_key: str) -> None:
        """Count an `/admin` sign-in against its client address; refuse it (TooManyRequests)
        when the address is over its limit or the name (`name_key`, a hash of it) has failed too
        often. Called before any password is checked, so a refusal costs no argon2."""
        if time.monotonic() < self._skip_until:
            return
        refusal: TooManyRequests | None = None
        try:
            if not self.window.hit(self.sign_ins, PREFIX, "sign-in", address):
                refusal = TooManyRequests(
                    "Too many sign-in attempts from this address; try again shortly.",
                    self._wait(self.sign_ins, "sign-in", address),
                )
            elif not self.window.test(self.sign_in_failures, PREFIX, "sign-in-name", name_key):
                refusal = TooManyRequests(
                    "Too many failed attempts; try again in a few minutes.",
                    self._wait(self.sign_in_failures, "sign-in-name", name_key),
                )
        except Exception:  # the storage is down: as for SCIM, let the attempt through
            self._storage_failed()
            return
        if refusal is not None:
            raise refusal

    def sign_in_failed(self, name_key: str) -> None:
        """A wrong name or password: one more failure for that name."""
        self._within(True, self.sign_in_failures, "sign-in-name", name_key)


def init(app: Flask, config: Config) -> RateLimits:
    """Install the limits on `app` (only paths under `/scim/` count; `/admin` sign-in asks
    `of(app)` itself)."""
    rate_limits = RateLimits(config)
    if not config.trusted_proxy_hops:
        app.before_request(rate_limits.notice_untrusted_proxy)
    app.extensions[EXTENSION] = rate_limits
    app.before_request(rate_limits.check)
    app.after_request(rate_limits.count_bad_token)
    return rate_limits


def of(app: Flask) -> RateLimits:
    """The limits installed on `app`."""
    return app.extensions[EXTENSION]
