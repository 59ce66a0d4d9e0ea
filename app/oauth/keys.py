"""The signing keys as the process holds them: ES256 (P-256) keys made with `cryptography`,
public halves published as a JWK Set (RFC 7517), the private half of the signer opened from its
sealed row. Read from the database once, then again only for a `kid` not seen yet (at most once
a minute) or when the signer is a minute old, so verifying a token costs no query.

Verifying and the key set need only the public halves, stored in clear: the private half is
opened only to sign, so a SECRET_KEY that cannot open it stops the token endpoint (503,
`SigningUnavailable`) but neither the key set nor the tokens already issued."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from app.secretbox import SecretBox, SecretUnreadable
from app.store import audit, signing_keys

log = logging.getLogger(__name__)

ALGORITHM = "ES256"
# The longest access-token lifetime a client may have; a retired key verifies this long.
MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600
RELOAD_SECONDS = 60.0


def _context(kid: str) -> str:
    return f"signing_key:{kid}"


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: the SHA-256 of the required members in lexicographic order, base64url."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def add_key(box: SecretBox, actor: audit.Actor = audit.SYSTEM) -> str:
    """A new signer (the ones before verify on for the longest token lifetime); its `kid`."""
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    kid = _thumbprint(jwk)[:22]  # 128 bits of the RFC 7638 thumbprint: unique, and short
    jwk.update(kid=kid, alg=ALGORITHM, use="sig")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    signing_keys.add(
        kid,
        ALGORITHM,
        json.dumps(jwk, sort_keys=True),
        box.seal(pem, _context(kid)),
        verify_after_retiring=dt.timedelta(seconds=MAX_TOKEN_LIFETIME_SECONDS),
        actor=actor,
    )
    return kid


class SigningUnavailable(Exception):
    """The signer's private half does not open under this process's SECRET_KEY (nor any of
    SECRET_KEY_PREVIOUS): no token can be signed until the key that sealed it is configured or
    `keys rotate` makes a signer sealed under this one."""


@dataclass(frozen=True)
class Signer:
    kid: str
    key: ec.EllipticCurvePrivateKey


class KeyRing:
    """One per app (`app.runtime`)."""

    def __init__(self, box: SecretBox) -> None:
        self.box = box
        self._lock = threading.Lock()
        self._public: dict[str, Any] = {}
        self._jwks: list[dict[str, Any]] = []
        self._sealed: tuple[str, str] | None = None  # the signer's kid and sealed private half
        self._signer: Signer | None = None  # opened when first needed to sign
        self._unreadable: set[str] = set()  # signers already reported as not opening
        self._loaded_at = -RELOAD_SECONDS

    def _stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= RELOAD_SECONDS

    def reload(self) -> None:
        """The keys that verify and the signer's sealed row; nothing is opened here."""
        rows = signing_keys.verifying()
        public = {row.kid: ECAlgorithm.from_jwk(row.public_jwk) for row in rows}
        jwks = [json.loads(row.public_jwk) for row in rows]
        sealed = next(((r.kid, r.private_key) for r in rows if r.retired_at is None), None)
        with self._lock:
            self._public, self._jwks, self._sealed = public, jwks, sealed
            self._loaded_at = time.monotonic()

    def signer(self) -> Signer:
        """The key that signs now; the first token request of a deployment makes one.
        SigningUnavailable when its private half does not open under SECRET_KEY."""
        if self._sealed is None or self._stale():
            self.reload()
        if self._sealed is None:
            add_key(self.box)
            self.reload()
        if self._sealed is None:  # the key just added did not read back
            raise RuntimeError("no signing key after adding one")
        kid, sealed = self._sealed
        signer = self._signer
        if signer is None or signer.kid != kid:
            signer = self._signer = Signer(kid, self._open(kid, sealed))
        return signer

    def _open(self, kid: str, sealed: str) -> ec.EllipticCurvePrivateKey:
        try:
            store = partial(signing_keys.store_resealed, kid, sealed)
            pem = self.box.open(sealed, _context(kid), store).encode()
        except SecretUnreadable:
            if kid not in self._unreadable:  # once per key and process, not once per request
                self._unreadable.add(kid)
                log.error(
                    "cannot sign access tokens: signing key %s does not open under SECRET_KEY "
                    "or SECRET_KEY_PREVIOUS; set the key that sealed it, or run "
                    "`lms-scim keys rotate` for a new signer (issued tokens keep verifying)",
                    kid,
                )
            raise SigningUnavailable(kid) from None
        return serialization.load_pem_private_key(pem, None)  # type: ignore[return-value]

    def public_key(self, kid: str) -> Any | None:
        """The verifying key named `kid`; an unknown one is looked for at most once a minute
        (a token signed by a key this process has not seen: made by `keys rotate` elsewhere)."""
        key = self._public.get(kid)
        if key is None and self._stale():
            self.reload()
            key = self._public.get(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        if self._stale():
            self.reload()
        return {"keys": list(self._jwks)}
