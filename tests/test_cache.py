"""The cached directory answers from memory until the ttl passes, then asks again."""

from __future__ import annotations

from dialplan.cache import CachedDirectory
from dialplan.pipeline import Pipeline
from tests.world import MADRID, from_terminal, world


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_second_lookup_within_the_ttl_is_answered_from_memory() -> None:
    clock = Clock()
    inner = world()
    cached = CachedDirectory(inner, ttl=5, clock=clock)
    first = await cached.terminal("t-alice")
    inner.terminals = []  # the database changed
    assert await cached.terminal("t-alice") == first
    assert (cached.hits, cached.misses) == (1, 1)
    clock.now = 5.0
    assert await cached.terminal("t-alice") is None  # expired: the change is seen


async def test_unknown_answers_are_remembered_too() -> None:
    cached = CachedDirectory(world(), ttl=5, clock=Clock())
    assert await cached.ddi("+34000") is None
    assert await cached.ddi("+34000") is None
    assert cached.hits == 1


async def test_the_oldest_entries_go_first_when_full() -> None:
    cached = CachedDirectory(world(), ttl=60, size=2, clock=Clock())
    await cached.extension(MADRID, "101")
    await cached.extension(MADRID, "102")
    await cached.extension(MADRID, "101")  # 101 is now the most recent
    await cached.call_acl(1)  # evicts 102
    await cached.extension(MADRID, "101")
    await cached.extension(MADRID, "102")
    assert cached.misses == 4


async def test_a_pipeline_over_the_cache_decides_like_one_without() -> None:
    plain = Pipeline(world())
    cached = Pipeline(CachedDirectory(world(), ttl=60, clock=Clock()))
    for dialled in ("102", "201", "905123456", "600123123", "*41", "12345"):
        request = from_terminal("t-alice", dialled)
        assert (await cached.run(request)).decision == (await plain.run(request)).decision
