"""The signing keys as the process holds them: ES256 (P-256) keys made with `cryptography`,
public halves published as a JWK Set (RFC 7517), the private half of the signer opened from its
sealed row. Read from the database once, then again only for a `kid` not seen yet (at most once
a minute) or when the signer is a minute old, so verifying a token costs no query."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from app.secretbox import SecretBox
from app.store import audit, signing_keys

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
        self._signer: Signer | None = None
        self._loaded_at = -RELOAD_SECONDS

    def _stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= RELOAD_SECONDS

    def reload(self) -> None:
        rows = signing_keys.verifying()
        public, jwks, signer = {}, [], None
        for row in rows:
            jwk = json.loads(row.public_jwk)
            public[row.kid] = ECAlgorithm.from_jwk(row.public_jwk)
            jwks.append(jwk)
            if signer is None and row.retired_at is None:
                pem = self.box.open(row.private_key, _context(row.kid)).encode()
                signer = Signer(row.kid, serialization.load_pem_private_key(pem, None))
        with self._lock:
            self._public, self._jwks, self._signer = public, jwks, signer
            self._loaded_at = time.monotonic()

    def signer(self) -> Signer:
        """The key that signs now; the first token request of a deployment makes one."""
        if self._signer is None or self._stale():
            self.reload()
        if self._signer is None:
            add_key(self.box)
            self.reload()
        if self._signer is None:  # the key just added did not read back
            raise RuntimeError("no signing key after adding one")
        return self._signer

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
