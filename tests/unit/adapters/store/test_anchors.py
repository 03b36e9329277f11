"""Anchors are owner-scoped everywhere: same names stay apart, nobody reaches another's."""

from __future__ import annotations

import pytest

from bot.adapters.store import AnchorExistsError, ImageMissingError, Store
from tests.unit.adapters.store.conftest import Backend, bytes_stored

ALICE, BOB = 111, 222


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


async def _save(store: Store, owner: int, name: str, image: bytes, kind: str = "face") -> str:
    sha = await store.put_image(image, "image/png")
    await store.save_anchor(
        owner_id=owner, name=name, kind=kind, note=f"{owner}'s", image_sha=sha, width=4, height=3
    )
    return sha


async def test_two_users_with_the_same_anchor_name_stay_apart(store: Store) -> None:
    a_sha = await _save(store, ALICE, "hero", b"alice face")
    b_sha = await _save(store, BOB, "hero", b"bob face", kind="character")

    a = await store.get_anchor(ALICE, "hero")
    b = await store.get_anchor(BOB, "HERO")
    assert a is not None and b is not None
    assert (a.owner_id, a.image_sha, a.kind, a.note) == (ALICE, a_sha, "face", f"{ALICE}'s")
    assert (b.owner_id, b.image_sha, b.kind) == (BOB, b_sha, "character")
    assert [x.owner_id for x in await store.list_anchors(ALICE)] == [ALICE]
    assert await store.anchor_names(BOB, "h") == ["hero"]

    # Bob renames and deletes his own; Alice's is untouched throughout.
    assert await store.rename_anchor(BOB, "hero", "villain")
    assert await store.get_anchor(ALICE, "hero") == a
    assert await store.delete_anchor(BOB, "villain")
    assert await store.get_anchor(ALICE, "hero") == a
    assert await store.get_image(a_sha) == (b"alice face", "image/png")
    assert await store.get_image(b_sha) is None  # Bob's bytes went with his anchor


async def test_nobody_reaches_another_users_anchor(store: Store) -> None:
    await _save(store, ALICE, "Alice", b"alice face")
    assert await store.get_anchor(BOB, "Alice") is None
    assert await store.list_anchors(BOB) == []
    assert await store.anchor_names(BOB, "") == []
    assert not await store.rename_anchor(BOB, "Alice", "mine now")
    assert not await store.delete_anchor(BOB, "Alice")
    kept = await store.get_anchor(ALICE, "alice")
    assert kept is not None and kept.name == "Alice"


async def test_names_are_unique_per_owner_case_insensitively(store: Store) -> None:
    await _save(store, ALICE, "Alice", b"1")
    with pytest.raises(AnchorExistsError):
        await _save(store, ALICE, " alice ", b"2")
    await _save(store, ALICE, "bob", b"3")
    with pytest.raises(AnchorExistsError):
        await store.rename_anchor(ALICE, "bob", "ALICE")
    assert await store.rename_anchor(ALICE, "alice", "ALICE")  # a change of case is fine
    names = [a.name for a in await store.list_anchors(ALICE)]
    assert names == ["ALICE", "bob"]
    assert not await store.rename_anchor(ALICE, "nobody", "x")


async def test_save_needs_stored_bytes_and_a_name(store: Store) -> None:
    with pytest.raises(ImageMissingError):
        await store.save_anchor(
            owner_id=ALICE, name="x", kind="face", note=None, image_sha="0" * 64, width=1, height=1
        )
    sha = await store.put_image(b"img", "image/png")
    with pytest.raises(ValueError):
        await store.save_anchor(
            owner_id=ALICE, name="  ", kind="face", note=None, image_sha=sha, width=1, height=1
        )
    row = await store.save_anchor(
        owner_id=ALICE, name=" spaced ", kind="object", note=None, image_sha=sha, width=5, height=6
    )
    assert row == await store.get_anchor(ALICE, "spaced")
    assert (row.name, row.width, row.height) == ("spaced", 5, 6)


async def test_autocomplete_by_prefix(store: Store) -> None:
    for i, name in enumerate(["Anna", "annie", "Bert", "an_x", "an%y", "Zoë", "zoe"]):
        await _save(store, ALICE, name, f"img{i}".encode())
    await _save(store, BOB, "Anders", b"bob")
    assert await store.anchor_names(ALICE, "an") == ["an%y", "an_x", "Anna", "annie"]
    assert await store.anchor_names(ALICE, "AN_") == ["an_x"]  # no LIKE wildcards
    assert await store.anchor_names(ALICE, "an%") == ["an%y"]
    assert await store.anchor_names(ALICE, "zo") == ["zoe", "Zoë"]
    assert await store.anchor_names(ALICE, "") == [
        "an%y", "an_x", "Anna", "annie", "Bert", "zoe", "Zoë",
    ]  # fmt: skip
    assert await store.anchor_names(ALICE, "a", limit=2) == ["an%y", "an_x"]
    assert await store.anchor_names(ALICE, "q") == []


async def test_deleting_keeps_bytes_still_referenced_elsewhere(store: Store) -> None:
    shared = await _save(store, ALICE, "one", b"shared face")
    await _save(store, BOB, "copy", b"shared face")  # same bytes, same sha
    used = await _save(store, ALICE, "used", b"used face")
    gen = await store.create_generation(
        user_id=ALICE, guild_id=None, channel_id=5, kind="imagine", spec={}, model="m",
        size="1K", aspect="1:1", summary="s", input_images=[used],
    )  # fmt: skip
    assert gen > 0
    assert await store.delete_anchor(ALICE, "one")
    assert await bytes_stored(store, shared)  # Bob's anchor still holds it
    assert await store.delete_anchor(BOB, "copy")
    assert not await bytes_stored(store, shared)
    assert await store.get_image(shared) is None

    assert await store.delete_anchor(ALICE, "used")
    # gone although a generation used it as an input: deleting an anchor deletes its image
    assert await store.get_image(used) is None
    assert await store.get_anchor(ALICE, "used") is None
