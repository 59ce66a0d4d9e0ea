"""The keys that sign access tokens: added, retired, and those still verifying. Rows only; the
cryptography is `app.oauth.keys`."""

from __future__ import annotations

import datetime as dt

from app.store import audit
from app.store.db import database
from app.store.models import SigningKey, utcnow


def add(
    kid: str,
    algorithm: str,
    public_jwk: str,
    sealed_private_key: str,
    *,
    verify_after_retiring: dt.timedelta,
    actor: audit.Actor = audit.SYSTEM,
) -> SigningKey:
    """A new signing key; the ones before stop signing and verify for `verify_after_retiring`
    more (the longest token lifetime), then they are gone from the key set."""
    now = utcnow()
    with database.atomic():
        SigningKey.update(retired_at=now, verify_until=now + verify_after_retiring).where(
            SigningKey.retired_at.is_null()
        ).execute()
        key = SigningKey.create(
            kid=kid, algorithm=algorithm, public_jwk=public_jwk, private_key=sealed_private_key
        )
        audit.record(actor, "SigningKey", kid, "key_add", {"kid": {"after": kid}})
    return key


def verifying(now: dt.datetime | None = None) -> list[SigningKey]:
    """The keys whose tokens are still accepted, newest first (the first one signs)."""
    now = now or utcnow()
    return list(
        SigningKey.select()
        .where(SigningKey.verify_until.is_null() | (SigningKey.verify_until > now))
        .order_by(SigningKey.retired_at.is_null().desc(), SigningKey.created.desc())
    )


def store_resealed(kid: str, sealed: str, resealed: str) -> None:
    """Replace key `kid`'s sealed private half by the same key `resealed` under the current
    SECRET_KEY (`SecretBox.open`), unless another process did first."""
    SigningKey.update(private_key=resealed).where(
        (SigningKey.kid == kid) & (SigningKey.private_key == sealed)
    ).execute()
