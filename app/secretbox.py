"""Secrets we must read back (a tenant's LMS web-service token, later OAuth signing keys),
encrypted at rest under a key derived from `SECRET_KEY`.

A sealed value is text that fits a TEXT column: `v1:` followed by unpadded base64url of a
96-bit random nonce and the AES-256-GCM ciphertext with its 128-bit tag. The AES key is derived
with HKDF-SHA256 under its own `info` label, so it is never the bytes that sign `/admin` cookies
(`SECRET_KEY` itself) or cursors (`app.cursors.derive_key`). The caller's `context` (such as
`tenant:3:lms_token`) is authenticated with the value: a sealed value copied into another row
or field does not open there.

Rotation: `SECRET_KEY_PREVIOUS` names earlier keys; a value sealed under any of them still
opens. A reader that passes `store` to `open` moves it to the current key where it is opened:
a value only a previous key opens is sealed again under the current key and handed to `store`,
which writes it back in place of the old one. Which key sealed a value is found by trying each
(a GCM tag check costs microseconds), so nothing in a sealed value identifies the key.

Settings carry a secret they only pass on (a tenant's or an LMS target's token) as a
`SealedSecret`, opened where it is used: a value that does not open (SECRET_KEY changed without
SECRET_KEY_PREVIOUS) then fails what needs it (the relay's deliveries, `relay test`) with a
message that says how to fix it, never what merely reads the settings (SCIM requests, /admin).

Nothing here prints a secret: `SecretUnreadable` and a `SealedSecret`'s repr name only the
context, the box's repr only counts its keys, and `masked` shows at most the last four
characters of a long value.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger(__name__)

# Writes a value resealed under the current key where the old one was read (`SecretBox.open`).
Store = Callable[[str], object]
# Turns the box's reason a `SealedSecret` does not open into the message its user sees.
Explain = Callable[[str], str]

VERSION = "v1"
PREFIX = f"{VERSION}:"
# HKDF's `info`: binds the derived key to this one use (RFC 5869 §3.2).
INFO = b"lms-scim tenant secrets v1"
NONCE_BYTES = 12  # the 96-bit nonce GCM is specified for (NIST SP 800-38D §5.2.1.1)
TAG_BYTES = 16
# `masked` shows the last four characters only of values at least this long, so at least
# twelve characters stay hidden.
MASK_SHOWS_TAIL_FROM = 16
BULLETS = "••••"
# How `masked` shows a sealed secret that does not open (`SealedSecret`).
UNREADABLE = "unreadable: set it again, or put its SECRET_KEY in SECRET_KEY_PREVIOUS"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class SecretUnreadable(Exception):
    """A sealed value that does not open: another key, another context, altered or not a sealed
    value at all. Not a client's error: what uses the secret tells the operator (the relay,
    `relay test`, the token endpoint's 503). The message names the context, never the value."""


def derive_key(secret_key: str) -> bytes:
    """The AES-256 key for sealed secrets, derived from one `SECRET_KEY`."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO)
    return hkdf.derive(secret_key.encode("utf-8"))


def _associated_data(context: str) -> bytes:
    """The version and the context, authenticated with the value (not encrypted, not stored)."""
    if not context:
        raise ValueError("a sealed secret needs a context, such as 'tenant:3:lms_token'")
    return f"{PREFIX}{context}".encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    """The bytes of unpadded base64url `text`; None for anything else (`base64` itself would
    skip stray characters instead of refusing them)."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SecretBox:
    """Seals and opens an app's secrets under its `SECRET_KEY`, and opens (never seals) under
    the keys in `SECRET_KEY_PREVIOUS`. Built once per app (`Runtime.secret_box`)."""

    __slots__ = ("_current", "_previous")

    def __init__(self, secret_key: str, previous: Iterable[str] = ()) -> None:
        if not secret_key:
            raise ValueError("SecretBox needs a secret key")
        self._current = AESGCM(derive_key(secret_key))
        self._previous = tuple(AESGCM(derive_key(key)) for key in previous if key != secret_key)

    def __repr__(self) -> str:
        return f"<SecretBox: current key and {len(self._previous)} previous>"

    __str__ = __repr__

    def seal(self, plaintext: str, context: str) -> str:
        """`plaintext` encrypted under the current key and bound to `context`."""
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate; the codec's message would quote it
            raise ValueError("a secret must be valid Unicode text") from None
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, data, _associated_data(context))
        return PREFIX + _b64(nonce + sealed)

    def open(self, token: str, context: str, store: Store | None = None) -> str:
        """The plaintext of `token`, sealed under the current or a previous key for `context`;
        else `SecretUnreadable`. When only a previous key opens it, `store` (if given) gets it
        sealed again under the current key, to write where `token` was read."""
        nonce, sealed = _split(token, context)
        aad = _associated_data(context)
        for index, key in enumerate((self._current, *self._previous)):
            try:
                data = key.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            plaintext = data.decode("utf-8")
            if index and store is not None:
                store(self.seal(plaintext, context))
                log.info("the secret sealed for %r is resealed under SECRET_KEY", context)
            return plaintext
        raise SecretUnreadable(
            f"the secret sealed for {context!r} does not open: sealed under a key that is "
            "neither SECRET_KEY nor in SECRET_KEY_PREVIOUS, for another context, or altered"
        )


class SealedSecret:
    """A secret as it is stored, opened when it is used (`open`) rather than when the settings
    that carry it are read. Equal to another for the same sealed text and context (the relay
    builds a target's client again when its token changes); opened once, then kept."""

    __slots__ = ("_box", "_explain", "_opened", "_store", "context", "token")

    def __init__(
        self,
        box: SecretBox,
        token: str,
        context: str,
        *,
        store: Store | None = None,
        explain: Explain | None = None,
    ) -> None:
        self._box, self.token, self.context = box, token, context
        self._store, self._explain = store, explain
        self._opened: str | None = None

    def __repr__(self) -> str:
        return f"<SealedSecret for {self.context!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SealedSecret):
            return NotImplemented
        return (self.token, self.context) == (other.token, other.context)

    def __hash__(self) -> int:
        return hash((self.token, self.context))

    def open(self) -> str:
        """The plaintext (handed resealed to `store` when only a previous key opens it), or
        `SecretUnreadable` with the message `explain` makes of the box's reason."""
        if self._opened is None:
            try:
                self._opened = self._box.open(self.token, self.context, self._store)
            except SecretUnreadable as exc:
                if self._explain is None:
                    raise
                raise SecretUnreadable(self._explain(str(exc))) from None
        return self._opened


def cannot_unseal(what: str, reset: str, reason: str) -> str:
    """The message of a stored secret that does not open: which, why, and the two ways out
    (`SealedSecret`'s `explain`, with `what` and `reset` bound)."""
    return (
        f"{what} cannot be unsealed ({reason}): set it again with {reset}, or put the "
        "SECRET_KEY it was sealed under back in SECRET_KEY_PREVIOUS"
    )


def reveal(secret: str | SealedSecret) -> str:
    """The plaintext of a secret as settings carry it: as given (the environment's), or opened
    now (`SecretUnreadable` when it does not open)."""
    return secret.open() if isinstance(secret, SealedSecret) else secret


def _split(token: str, context: str) -> tuple[bytes, bytes]:
    """The nonce and the ciphertext with its tag, or `SecretUnreadable` for what is not a
    `v1:` sealed value."""
    if not isinstance(token, str) or not token.startswith(PREFIX):
        raise SecretUnreadable(f"the secret stored for {context!r} is not a {VERSION} sealed value")
    raw = _unb64(token[len(PREFIX) :])
    if raw is None:
        raise SecretUnreadable(f"the secret stored for {context!r} is not base64url")
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise SecretUnreadable(f"the secret stored for {context!r} is truncated")
    return raw[:NONCE_BYTES], raw[NONCE_BYTES:]


def masked(value: str | SealedSecret | None) -> str:
    """How a secret is shown (`tenants show`, `lms show`): `not set`, bullets with the last
    four characters of a long value (enough to tell two tokens apart and too little to use), or
    `UNREADABLE` for a sealed one that does not open."""
    if isinstance(value, SealedSecret):
        try:
            value = value.open()
        except SecretUnreadable:
            return UNREADABLE
    if not value:
        return "not set"
    if len(value) < MASK_SHOWS_TAIL_FROM:
        return BULLETS
    return BULLETS + value[-4:]
