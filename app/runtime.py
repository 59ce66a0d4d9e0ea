"""What one app holds besides Flask: its frozen `Config` and the services built from it.

`create_app` builds one `Runtime` and keeps it in `app.extensions`. Request and CLI code read it
through `current()` and pass the settings the lower layers need as arguments; nothing below the
HTTP and CLI layers reads settings from anywhere else, so two apps in one process (each with its
own settings) never see each other's.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from flask import Flask, appcontext_pushed, current_app, g

from app.auth import TokenCache
from app.config import Config, TenantSettings, parse_directory_id
from app.freshness import FreshCache, Freshness
from app.marshal import Limits as InputLimits
from app.oauth.access_tokens import AccessTokens
from app.oauth.entra import EntraKeys, EntraTokens
from app.oauth.keys import KeyRing
from app.passwords import Hasher
from app.secretbox import SealedSecret, SecretBox, cannot_unseal
from app.store import generation, lms_targets, outbox, tenancy
from app.store import oauth_clients as oauth_client_store
from app.store import tenants as tenant_store
from app.store.oauth_clients import ClientState
from app.store.tenant_names import TenantNames

log = logging.getLogger(__name__)

EXTENSION = "lms_scim"
ENTRA = "ENTRA_TENANT_ID"
# `/admin` sign-ins hash apart from SCIM writes: one at a time per process, and a sign-in that
# finds the slot taken this long is refused (503) instead of queueing.
SIGN_IN_HASHES = 1
SIGN_IN_WAIT_SECONDS = 0.25


@dataclass(frozen=True)
class Runtime:
    """The settings of one app and the per-app state that goes with them."""

    config: Config
    # Signs `/admin` session cookies and SCIM cursors (`resolve_secret_key`).
    secret_key: str = field(repr=False)
    # Seals and opens the secrets kept in the database (`app.secretbox`).
    secret_box: SecretBox
    hasher: Hasher
    # argon2id for `/admin` sign-ins: a budget of their own, so they never delay SCIM writes.
    sign_in_hasher: Hasher
    tokens: TokenCache
    input_limits: InputLimits
    # Each tenant's settings and state, kept while the cache generation stands still.
    tenants: FreshCache[int, TenantState]
    # OAuth access tokens: the signing keys, and clients' state (kept like tenants').
    access_tokens: AccessTokens
    oauth_clients: FreshCache[str, ClientState | None]
    # Which LMS targets of a tenant receive its changes (`receivers`), kept like tenants'.
    relay_targets: FreshCache[tuple[int, bool, int], lms_targets.Receiving]
    # Tokens Entra ID signs itself: the directories' key sets, and which tenant configured
    # which directory (ENTRA_TENANT_ID; one entry, kept like tenants').
    entra: EntraTokens
    entra_directories: FreshCache[None, dict[str, tuple[int, ...]]]
    # Slug → tenant id for tenant base URLs, without a query per request.
    tenant_names: TenantNames = field(default_factory=TenantNames)

    @classmethod
    def build(cls, config: Config) -> Runtime:
        secret_key = resolve_secret_key(config)
        box = SecretBox(secret_key, config.secret_key_previous)
        # One generation check per TOKEN_CACHE_SECONDS serves the three caches.
        freshness = Freshness(config.token_cache_seconds, generation.read)
        clients: FreshCache[str, ClientState | None] = FreshCache(freshness)
        built: list[Runtime] = []  # the Entra verifier asks the runtime it belongs to
        entra = EntraTokens(
            EntraKeys(),
            lambda directory: built[0].entra_tenants(directory),
            lambda tenant_id: built[0].tenant_settings(tenant_id),
        )
        runtime = cls(
            config=config,
            secret_key=secret_key,
            secret_box=box,
            hasher=Hasher(config.hash_concurrency),
            sign_in_hasher=Hasher(SIGN_IN_HASHES, wait=SIGN_IN_WAIT_SECONDS),
            tokens=TokenCache(freshness),
            input_limits=InputLimits(
                multi_values=config.max_multi_values,
                members=config.max_members_per_operation,
            ),
            tenants=FreshCache(freshness),
            access_tokens=AccessTokens(
                KeyRing(box),
                lambda identifier: clients.get(
                    identifier, lambda: oauth_client_store.by_identifier(identifier)
                ),
                config.scim_base_url,
            ),
            oauth_clients=clients,
            relay_targets=FreshCache(freshness),
            entra=entra,
            entra_directories=FreshCache(freshness),
        )
        built.append(runtime)
        return runtime

    def tenant(self, tenant_id: int | None = None) -> TenantState:
        """The settings and state of `tenant_id` (default: the tenant at hand)."""
        chosen = tenancy.current() if tenant_id is None else tenant_id
        if chosen is None:
            raise RuntimeError("tenant settings asked for inside everywhere(): name the tenant")
        return self.tenants.get(chosen, lambda: self._load_tenant(chosen))

    def tenant_settings(self, tenant_id: int | None = None) -> TenantSettings:
        """The settings the tenant at hand (or `tenant_id`) works under: the one accessor for
        DEFAULT_USER_TYPE, UNIQUE_EMAILS, the relay's LMS_* and the other per-tenant ones."""
        return self.tenant(tenant_id).settings

    def receivers(self, tenant_id: int) -> tuple[int, ...]:
        """The ids of the tenant's LMS targets that receive its changes (the relay is opt-in:
        none without an LMS, and then no outbox statement is run)."""
        return self.receiving(tenant_id).targets

    def receiving(self, tenant_id: int) -> lms_targets.Receiving:
        """Which of the tenant's LMS targets receive its changes, which do not, and whether it
        has enrolments to compute. From the cached settings (is LMS_URL set?) and a cached
        answer of the targets and rules, confirmed by the cache generation like the tenant's
        settings (m0021 moves it when targets change or a rule is added): no query on the hot
        path."""
        configured = bool(self.tenant_settings(tenant_id).lms_url)
        key = (tenant_id, configured, generation.local_changes())

        def load() -> lms_targets.Receiving:
            with tenancy.use(tenant_id):
                return lms_targets.receiving(configured)

        return self.relay_targets.get(key, load)

    def entra_tenants(self, directory: str) -> tuple[int, ...]:
        """The tenants that configured Entra directory `directory` (ENTRA_TENANT_ID): one, or
        none; more than one is a conflict, and then none of them accepts its tokens."""
        return self.entra_directories.get(None, self.load_entra_directories).get(directory, ())

    def load_entra_directories(self) -> dict[str, tuple[int, ...]]:
        """directory id → the tenants that configured it: each tenant's own ENTRA_TENANT_ID,
        and the environment's for the default tenant unless it set its own."""
        claims = {
            tenant_id: text for tenant_id, (_, text) in tenant_store.own_values(ENTRA).items()
        }
        if self.config.entra_tenant_id and tenancy.DEFAULT_TENANT not in claims:
            claims[tenancy.DEFAULT_TENANT] = self.config.entra_tenant_id
        index: dict[str, tuple[int, ...]] = {}
        for tenant_id, text in sorted(claims.items()):
            try:
                directory = parse_directory_id(text)
            except ValueError:  # stored before it was checked; `tenants show` says so
                continue
            index[directory] = (*index.get(directory, ()), tenant_id)
        for directory, tenants in index.items():
            if len(tenants) > 1:
                log.warning(
                    "Entra directory %s is configured by tenants %s; tokens it signs are refused "
                    "until only one has it (lms-scim tenants set SLUG ENTRA_TENANT_ID=)",
                    directory,
                    tenants,
                )
        return index

    def check_entra_directory(self, tenant_id: int, text: str | None) -> None:
        """ValueError when another tenant (or the environment, for the default tenant) already
        configured the Entra directory `text`: a directory's tokens go to one tenant."""
        if not text:
            return
        directory = parse_directory_id(text)
        for other in self.load_entra_directories().get(directory, ()):
            if other != tenant_id:
                slug = tenant_store.stored(other).slug
                raise ValueError(
                    f"{ENTRA}: directory {directory} is already tenant {slug!r}'s; "
                    "a directory's tokens can go to one tenant only"
                )

    def _load_tenant(self, tenant_id: int) -> TenantState:
        """The tenant's settings with its LMS_TOKEN still sealed: it is opened where it is used
        (the relay, `relay test`, `tenants show`), so a token this SECRET_KEY cannot open fails
        those with a message saying how to fix it, never the tenant's SCIM requests."""
        stored = tenant_store.stored(tenant_id)
        settings = TenantSettings.overlay(
            self.config, stored.settings, default_tenant=tenant_id == tenancy.DEFAULT_TENANT
        )
        sealed = stored.settings.get("LMS_TOKEN")
        if sealed:  # overlay took the sealed text for the token: it is that, sealed
            token = SealedSecret(
                self.secret_box,
                sealed,
                lms_token_context(tenant_id),
                store=partial(tenant_store.store_resealed, tenant_id, "LMS_TOKEN", sealed),
                explain=partial(
                    cannot_unseal,
                    f"the LMS token of tenant {stored.slug!r}",
                    f"`lms-scim tenants set {stored.slug} LMS_TOKEN` (the token on stdin)",
                ),
            )
            settings = replace(settings, lms_token=token)
        return TenantState(stored.slug, settings, stored.disabled)


def lms_token_context(tenant_id: int) -> str:
    """What a tenant's sealed LMS token is bound to (`app.secretbox`)."""
    return f"tenant:{tenant_id}:lms_token"


@dataclass(frozen=True)
class TenantState:
    slug: str
    settings: TenantSettings
    disabled: bool


_RECEIVERS = "lms_scim_receivers"


def install(app: Flask, runtime: Runtime) -> None:
    """Keep `runtime` in `app`, and let the outbox ask it, within each of the app's contexts
    (requests and CLI commands alike), which LMS targets receive changes."""
    app.extensions[EXTENSION] = runtime

    def pushed(_sender: Flask, **_extra: object) -> None:
        g.setdefault(_RECEIVERS, []).append(outbox.receivers_from(runtime.receiving))

    def popped(_exc: BaseException | None) -> None:
        tokens = g.get(_RECEIVERS)
        if tokens:
            try:
                outbox.reset(tokens.pop())
            except ValueError:  # popped in another contextvars.Context than it was pushed in
                outbox.receivers_from(None)

    appcontext_pushed.connect(pushed, app, weak=False)
    app.teardown_appcontext(popped)


def of(app: Flask) -> Runtime:
    """The runtime of `app` (tests, and code that holds the app itself)."""
    return app.extensions[EXTENSION]


def current() -> Runtime:
    """The runtime of the app handling this request or CLI command."""
    return of(current_app)


def tenant_settings() -> TenantSettings:
    """The settings of the tenant the request or command at hand works for."""
    return current().tenant_settings()


def resolve_secret_key(config: Config) -> str:
    """`SECRET_KEY`, else a key generated once and kept in `SECRET_KEY_FILE` (mode 0600), so a
    restart keeps operators signed in and cursors valid (tests get a throwaway key). Workers
    starting together race benignly: the first `link` wins and everyone reads the winner's key."""
    if config.secret_key:
        return config.secret_key
    if config.testing:  # tests never write into the checkout's var/
        return secrets.token_urlsafe(48)
    path = Path(config.secret_key_file)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # var/: the owner's only
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
