"""The batcher and group commit: calls made together share one call; errors reach only their own callers."""

from __future__ import annotations

import asyncio

import pytest

from assetgen_runtime.batching import Batcher, GroupCommit


class _Recorder:
    """A batch function that records its batches and answers each key with its double."""

    def __init__(self, *, fail_key: int | None = None, release: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.called = asyncio.Event()
        self._fail_key = fail_key
        self._release = release

    async def __call__(self, keys: list[int]) -> list[int | BaseException]:
        self.batches.append(keys)
        self.called.set()
        if self._release is not None:
            await self._release.wait()
        return [ValueError(f"bad {key}") if key == self._fail_key else key * 2 for key in keys]


async def test_calls_made_together_share_one_batch_in_order() -> None:
    recorder = _Recorder()
    batcher = Batcher(recorder, max_batch=100)
    results = await asyncio.gather(*(batcher.load(key) for key in range(10)))
    assert results == [key * 2 for key in range(10)]
    assert recorder.batches == [list(range(10))]


async def test_batches_are_cut_at_the_maximum_size() -> None:
    recorder = _Recorder()
    batcher = Batcher(recorder, max_batch=4)
    results = await asyncio.gather(*(batcher.load(key) for key in range(10)))
    assert results == [key * 2 for key in range(10)]
    assert [len(batch) for batch in recorder.batches] == [4, 4, 2]


async def test_calls_in_later_iterations_get_a_new_batch() -> None:
    recorder = _Recorder()
    batcher = Batcher(recorder)
    assert await batcher.load(1) == 2
    assert await batcher.load(2) == 4
    assert recorder.batches == [[1], [2]]


async def test_an_error_for_one_key_reaches_only_its_caller() -> None:
    batcher = Batcher(_Recorder(fail_key=3))
    results = await asyncio.gather(*(batcher.load(key) for key in range(5)), return_exceptions=True)
    assert results[:3] == [0, 2, 4] and results[4] == 8
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad 3"


async def test_a_failing_batch_function_fails_every_caller() -> None:
    async def broken(keys: list[int]) -> list[int]:
        raise ConnectionError("down")

    batcher: Batcher[int, int] = Batcher(broken)
    results = await asyncio.gather(*(batcher.load(key) for key in range(3)), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)


async def test_a_cancelled_caller_leaves_the_rest_of_its_batch_alone() -> None:
    release = asyncio.Event()
    recorder = _Recorder(release=release)
    batcher = Batcher(recorder)
    first = asyncio.ensure_future(batcher.load(1))
    second = asyncio.ensure_future(batcher.load(2))
    await recorder.called.wait()
    first.cancel()
    release.set()
    assert await second == 4
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_wrong_number_of_results_is_an_error_not_a_mixup() -> None:
    async def short(keys: list[int]) -> list[int]:
        return keys[:-1]

    batcher: Batcher[int, int] = Batcher(short)
    results = await asyncio.gather(batcher.load(1), batcher.load(2), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Batcher(_Recorder(), max_batch=0)


async def test_a_linger_gathers_calls_from_later_iterations_into_one_batch() -> None:
    recorder = _Recorder()
    batcher = Batcher(recorder, linger=0.05)

    async def later(key: int) -> int:
        await asyncio.sleep(0)  # arrives an iteration after the first call
        return await batcher.load(key)

    results = await asyncio.gather(batcher.load(1), later(2), later(3))
    assert results == [2, 4, 6]
    assert recorder.batches == [[1, 2, 3]]


def test_linger_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        Batcher(_Recorder(), linger=-1)


class _Table:
    """A fake table of key -> value written by GroupCommit; records each statement it was sent."""

    def __init__(self, *, refuse: str | None = None) -> None:
        self.rows: dict[str, int] = {}
        self.statements: list[list[tuple[str, int]]] = []
        self._refuse = refuse

    async def together(self, writes: list[tuple[str, int]]) -> list[int]:
        self.statements.append(writes)
        if any(key == self._refuse for key, _ in writes):
            raise ValueError("the database refused the group")
        self.rows.update(writes)
        return [value for _, value in writes]

    async def alone(self, write: tuple[str, int]) -> int:
        self.statements.append([write])
        key, value = write
        if key == self._refuse:
            raise ValueError(f"refused {key}")
        self.rows[key] = value
        return value


def _group_commit(table: _Table) -> GroupCommit[tuple[str, int], int]:
    return GroupCommit(
        together=table.together,
        alone=table.alone,
        key=lambda write: write[0],
        shape=lambda write: write[1] % 2,  # odd and even values are different statements
        linger=0.01,
    )


async def test_writes_made_together_share_one_statement_per_shape() -> None:
    table = _Table()
    commit = _group_commit(table)
    results = await asyncio.gather(*(commit.write((f"k{n}", n)) for n in range(6)))
    assert results == list(range(6))
    assert sorted(table.statements) == [[("k0", 0), ("k2", 2), ("k4", 4)], [("k1", 1), ("k3", 3), ("k5", 5)]]
    assert await commit.write(("lone", 7)) == 7
    assert table.statements[-1] == [("lone", 7)]  # alone, the usual way


async def test_a_write_made_after_a_group_went_goes_in_the_next() -> None:
    table = _Table()
    commit = _group_commit(table)
    assert await commit.write(("a", 2)) == 2
    assert await commit.write(("b", 4)) == 4
    assert table.statements == [[("a", 2)], [("b", 4)]]


async def test_a_second_write_of_one_key_follows_the_first() -> None:
    table = _Table()
    commit = _group_commit(table)
    await asyncio.gather(commit.write(("k", 2)), commit.write(("j", 4)), commit.write(("k", 6)))
    assert table.statements == [[("k", 2), ("j", 4)], [("k", 6)]]
    assert table.rows == {"k": 6, "j": 4}


async def test_a_refused_write_fails_alone() -> None:
    table = _Table(refuse="bad")
    commit = _group_commit(table)
    results = await asyncio.gather(
        *(commit.write((key, 2)) for key in ("a", "bad", "c")), return_exceptions=True
    )
    assert results[0] == 2 and results[2] == 2
    assert isinstance(results[1], ValueError) and str(results[1]) == "refused bad"
    assert table.rows == {"a": 2, "c": 2}
    assert table.statements[0] == [("a", 2), ("bad", 2), ("c", 2)]  # the group, then each alone
    assert sorted(table.statements[1:]) == [[("a", 2)], [("bad", 2)], [("c", 2)]]
