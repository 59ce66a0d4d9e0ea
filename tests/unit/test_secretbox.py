"""`app.secretbox`: secrets kept in the database open only with the app's key, in the row and
field they were sealed for, unaltered; older keys open them until they are resealed; settings
carry them sealed until they are used; nothing shows a secret or a key."""

from __future__ import annotations

import base64
import re
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import cursors
from app.config import Config
from app.runtime import Runtime
from app.secretbox import (
    UNREADABLE,
    SealedSecret,
    SecretBox,
    SecretUnreadable,
    cannot_unseal,
    derive_key,
    masked,
    reveal,
)

KEY = "the current secret key, long and random in real life"
OLD_KEY = "the secret key before the last rotation"
OTHER_KEY = "another deployment's secret key"
CONTEXT = "tenant:3:lms_token"
SECRET = "moodle-ws-token-0123456789abcdef"
TOKEN_SHAPE = re.compile(r"v1:[A-Za-z0-9_-]+")


def box(key: str = KEY, *previous: str) -> SecretBox:
    return SecretBox(key, previous)


def unreadable(sealed: object, context: str = CONTEXT, opener: SecretBox | None = None) -> str:
    """The message of the SecretUnreadable that opening `sealed` raises."""
    with pytest.raises(SecretUnreadable) as caught:
        (opener or box()).open(sealed, context)  # type: ignore[arg-type]
    message = str(caught.value)
    assert SECRET not in message
    assert KEY not in message
    return message


def raw(token: str) -> bytes:
    body = token.removeprefix("v1:")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def encoded(data: bytes) -> str:
    return "v1:" + base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip() -> None:
    sealed = box().seal(SECRET, CONTEXT)
    assert box().open(sealed, CONTEXT) == SECRET
    assert box().open(box().seal("", CONTEXT), CONTEXT) == ""


def test_token_is_versioned_base64url_text_and_fresh_each_time() -> None:
    first, second = box().seal(SECRET, CONTEXT), box().seal(SECRET, CONTEXT)
    assert first != second  # a random nonce each time
    for sealed in (first, second):
        assert TOKEN_SHAPE.fullmatch(sealed)
        assert len(raw(sealed)) == 12 + len(SECRET) + 16  # nonce, ciphertext, GCM tag
        assert box().open(sealed, CONTEXT) == SECRET
    assert raw(first)[:12] != raw(second)[:12]


def test_plaintext_and_key_appear_nowhere() -> None:
    secrets_box = box(KEY, OLD_KEY)
    sealed = secrets_box.seal(SECRET, CONTEXT)
    assert SECRET not in sealed
    assert SECRET.encode() not in raw(sealed)
    for shown in (repr(secrets_box), str(secrets_box), f"{secrets_box}"):
        assert KEY not in shown
        assert OLD_KEY not in shown
        assert derive_key(KEY).hex() not in shown
    assert repr(secrets_box) == "<SecretBox: current key and 1 previous>"


def test_another_context_does_not_open_it() -> None:
    sealed = box().seal(SECRET, CONTEXT)
    for context in ("tenant:4:lms_token", "tenant:33:lms_token", "tenant:3:oauth_key", "tenant:3"):
        message = unreadable(sealed, context)
        assert repr(context) in message


def test_an_altered_token_does_not_open() -> None:
    sealed = box().seal(SECRET, CONTEXT)
    data = raw(sealed)
    for at in (0, 11, 12, len(data) // 2, len(data) - 16, len(data) - 1):  # nonce, body, tag
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        unreadable(encoded(bytes(flipped)))
    unreadable(encoded(data[:-1]))
    unreadable(encoded(data + b"\x00"))
    unreadable(encoded(data[:12] + data[13:]))


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("", "not a v1 sealed value"),
        (None, "not a v1 sealed value"),
        (SECRET, "not a v1 sealed value"),
        ("v2:AAAA", "not a v1 sealed value"),
        ("v1:AAAA!AAA", "not base64url"),
        ("v1:AAAA AAA", "not base64url"),
        ("v1:AAAA+AAA", "not base64url"),
        ("v1:AAAA=", "not base64url"),
        ("v1:AAAAA", "not base64url"),  # 5 characters: no whole byte in the last one
        ("v1:", "truncated"),
        ("v1:" + "A" * 36, "truncated"),  # 27 bytes: less than a nonce and a tag
    ],
)
def test_what_is_not_a_sealed_value_is_refused_as_such(token: str | None, says: str) -> None:
    assert says in unreadable(token)


def test_another_secret_key_does_not_open_it() -> None:
    sealed = box(OTHER_KEY).seal(SECRET, CONTEXT)
    message = unreadable(sealed)
    assert "SECRET_KEY_PREVIOUS" in message
    assert OTHER_KEY not in message


def test_previous_key_opens_until_resealed_under_the_current_one() -> None:
    old_sealed = box(OLD_KEY).seal(SECRET, CONTEXT)
    unreadable(old_sealed)  # the new key alone cannot
    rotated = box(KEY, OTHER_KEY, OLD_KEY)
    stored: list[str] = []
    assert rotated.open(old_sealed, CONTEXT, stored.append) == SECRET

    (resealed,) = stored
    assert resealed != old_sealed
    assert box(KEY).open(resealed, CONTEXT) == SECRET  # no previous key needed any more
    unreadable(resealed, opener=box(OLD_KEY))
    # Previous keys open, never seal; a reseal keeps the context and refuses another one.
    unreadable(rotated.seal(SECRET, CONTEXT), opener=box(OLD_KEY))
    unreadable(resealed, "tenant:4:lms_token")
    with pytest.raises(SecretUnreadable):
        rotated.open(old_sealed, "tenant:4:lms_token", stored.append)
    assert stored == [resealed]  # what does not open is never handed to `store`


def test_a_reader_gets_what_only_a_previous_key_opens_resealed_to_store() -> None:
    stored: list[str] = []
    rotated = box(KEY, OLD_KEY)
    assert rotated.open(rotated.seal(SECRET, CONTEXT), CONTEXT, stored.append) == SECRET
    assert stored == []  # the current key opens it: nothing to store
    assert rotated.open(box(OLD_KEY).seal(SECRET, CONTEXT), CONTEXT, stored.append) == SECRET
    (resealed,) = stored
    assert box(KEY).open(resealed, CONTEXT) == SECRET
    unreadable(resealed, opener=box(OLD_KEY))


class CountingBox(SecretBox):
    """A box that counts how often it opens something."""

    __slots__ = ("opened",)

    def __init__(self, key: str, *previous: str) -> None:
        super().__init__(key, previous)
        self.opened = 0

    def open(self, token: str, context: str, store: object = None) -> str:  # type: ignore[override]
        self.opened += 1
        return super().open(token, context, store)  # type: ignore[arg-type]


def test_a_sealed_secret_opens_when_used_and_once() -> None:
    counting = CountingBox(KEY, OLD_KEY)
    stored: list[str] = []
    old_sealed = box(OLD_KEY).seal(SECRET, CONTEXT)
    secret = SealedSecret(counting, old_sealed, CONTEXT, store=stored.append)
    assert counting.opened == 0  # carried in settings, not opened
    assert reveal(secret) == secret.open() == SECRET
    assert counting.opened == 1  # kept once opened
    (resealed,) = stored  # resealed where it is used, once
    assert box(KEY).open(resealed, CONTEXT) == SECRET
    assert masked(secret) == "••••cdef"
    assert reveal("plain-token") == "plain-token"  # the environment's, as given
    # Equal for the same sealed text and context, whatever the box; shown by context only.
    assert secret == SealedSecret(box(), old_sealed, CONTEXT)
    assert hash(secret) == hash(SealedSecret(box(), old_sealed, CONTEXT))
    assert secret != SealedSecret(counting, resealed, CONTEXT)
    assert secret != SealedSecret(counting, old_sealed, "tenant:4:lms_token")
    assert secret != old_sealed
    assert repr(secret) == f"<SealedSecret for {CONTEXT!r}>"


def test_a_sealed_secret_that_does_not_open_says_why_and_how_to_fix_it() -> None:
    sealed = box(OTHER_KEY).seal(SECRET, CONTEXT)
    explain = partial(cannot_unseal, "the LMS token of tenant 'acme'", "`tenants set acme`")
    secret = SealedSecret(box(KEY, OLD_KEY), sealed, CONTEXT, explain=explain)
    with pytest.raises(SecretUnreadable) as caught:
        secret.open()
    message = str(caught.value)
    assert message.startswith("the LMS token of tenant 'acme' cannot be unsealed (")
    assert "set it again with `tenants set acme`" in message
    assert message.endswith("or put the SECRET_KEY it was sealed under back in SECRET_KEY_PREVIOUS")
    for hidden in (SECRET, KEY, OLD_KEY, OTHER_KEY):
        assert hidden not in message
    assert caught.value.__cause__ is None
    assert masked(secret) == UNREADABLE
    # Without `explain`, the box's own reason.
    with pytest.raises(SecretUnreadable, match="SECRET_KEY_PREVIOUS"):
        reveal(SealedSecret(box(), sealed, CONTEXT))


def test_the_encryption_key_is_not_the_signing_key() -> None:
    derived = derive_key(KEY)
    assert len(derived) == 32
    assert derived not in (KEY.encode(), cursors.derive_key(KEY))
    assert derived != derive_key(OLD_KEY)


def test_what_cannot_be_sealed_says_so_without_the_value() -> None:
    with pytest.raises(ValueError, match="context") as caught:
        box().seal(SECRET, "")
    assert SECRET not in str(caught.value)
    with pytest.raises(ValueError, match="valid Unicode") as caught:
        box().seal("token-\ud800-tail", CONTEXT)
    assert "\ud800" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    with pytest.raises(ValueError, match="secret key"):
        SecretBox("")


@settings(max_examples=200)
@given(plaintext=st.text(), context=st.text(min_size=1, max_size=40))
def test_any_text_round_trips(plaintext: str, context: str) -> None:
    sealed = box().seal(plaintext, context)
    assert TOKEN_SHAPE.fullmatch(sealed)
    assert box().open(sealed, context) == plaintext
    stored: list[str] = []
    assert box(OTHER_KEY, KEY).open(sealed, context, stored.append) == plaintext
    (resealed,) = stored
    assert resealed != sealed
    assert box(OTHER_KEY).open(resealed, context) == plaintext


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "not set"),
        ("", "not set"),
        ("short", "••••"),
        ("fifteen chars!!", "••••"),
        ("sixteen chars ab", "••••s ab"),
        (SECRET, "••••cdef"),
        ("ключ-доступа-ёжик", "••••ёжик"),
    ],
)
def test_masked_shows_at_most_the_last_four_of_a_long_value(value: str | None, shown: str) -> None:
    assert masked(value) == shown


def test_config_reads_previous_keys_and_never_shows_secrets() -> None:
    assert Config.from_env({}).secret_key_previous == ()
    config = Config.from_env(
        {"SECRET_KEY": KEY, "SECRET_KEY_PREVIOUS": f" {OLD_KEY} ,, {OTHER_KEY},"},
        lms_token=SECRET,
        metrics_token="metrics-token-value",
    )
    assert config.secret_key_previous == (OLD_KEY, OTHER_KEY)
    shown = repr(config)
    for hidden in (KEY, OLD_KEY, OTHER_KEY, SECRET, "metrics-token-value"):
        assert hidden not in shown
    assert "max_page_size=1000" in shown


def test_runtime_builds_the_box_from_its_config() -> None:
    old_sealed = box(OLD_KEY).seal(SECRET, CONTEXT)
    built = Runtime.build(Config(testing=True, secret_key=KEY, secret_key_previous=(OLD_KEY,)))
    assert built.secret_box.open(old_sealed, CONTEXT) == SECRET
    assert box(KEY).open(built.secret_box.seal(SECRET, CONTEXT), CONTEXT) == SECRET
    for hidden in (KEY, OLD_KEY):
        assert hidden not in repr(built)
