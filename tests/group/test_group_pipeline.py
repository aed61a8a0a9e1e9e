"""errgroup's ExampleGroup_pipeline (MD5All from blog.golang.org/pipelines), both flavours.

A producer walks a directory and sends paths; 20 digesters read and hash them; the caller
collects the sums. An error in one digester must stop the producer (it is blocked sending
on a channel, bound to g.ctx) and leave nothing running.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

import corral
import corral.threads

pytestmark = pytest.mark.timeout(30)

NUM_DIGESTERS = 20


def read_bytes(p: Path) -> bytes:
    return p.read_bytes()


async def md5_all_aio(
    paths_source: Iterable[Path], read: Callable[[Path], bytes] = read_bytes
) -> dict[Path, str]:
    paths: corral.Channel[Path] = corral.Channel()
    sums: corral.Channel[tuple[Path, str]] = corral.Channel()
    out: dict[Path, str] = {}
    async with corral.Group() as g:

        async def walk() -> None:
            try:
                for p in paths_source:
                    await paths.send(p, ctx=g.ctx)  # Cancelled once the group failed
            finally:
                paths.close()

        async def digester() -> None:
            async for p in paths:
                await sums.send((p, hashlib.md5(read(p)).hexdigest()), ctx=g.ctx)

        async def digesters() -> None:
            try:
                async with corral.Group(ctx=g.ctx) as dg:
                    for _ in range(NUM_DIGESTERS):
                        await dg.go(digester)
            finally:
                sums.close()

        await g.go(walk)
        await g.go(digesters)
        out.update([item async for item in sums])
    return out


def md5_all_threads(
    paths_source: Iterable[Path], read: Callable[[Path], bytes] = read_bytes
) -> dict[Path, str]:
    paths: corral.threads.Channel[Path] = corral.threads.Channel()
    sums: corral.threads.Channel[tuple[Path, str]] = corral.threads.Channel()
    out: dict[Path, str] = {}
    with corral.threads.Group() as g:

        def walk() -> None:
            try:
                for p in paths_source:
                    paths.send(p, ctx=g.ctx)
            finally:
                paths.close()

        def digester() -> None:
            for p in paths:
                sums.send((p, hashlib.md5(read(p)).hexdigest()), ctx=g.ctx)

        def digesters() -> None:
            try:
                with corral.threads.Group(ctx=g.ctx) as dg:
                    for _ in range(NUM_DIGESTERS):
                        dg.go(digester)
            finally:
                sums.close()

        g.go(walk)
        g.go(digesters)
        out.update(sums)
    return out


@pytest.fixture
def tree(tmp_path: Path) -> list[Path]:
    files = []
    for i in range(60):
        d = tmp_path / f"d{i % 4}"
        d.mkdir(exist_ok=True)
        f = d / f"f{i}.txt"
        f.write_bytes(f"file {i}\n".encode() * (i + 1))
        files.append(f)
    return files


def expected(files: list[Path]) -> dict[Path, str]:
    return {f: hashlib.md5(f.read_bytes()).hexdigest() for f in files}


def walk(root: Path) -> Iterable[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


async def test_md5_all_aio(tree: list[Path]) -> None:
    assert await md5_all_aio(walk(tree[0].parent.parent)) == expected(tree)


def test_md5_all_threads(tree: list[Path]) -> None:
    assert md5_all_threads(walk(tree[0].parent.parent)) == expected(tree)


def failing_read(p: Path) -> bytes:
    if p.name == "f7.txt":
        raise PermissionError(f"cannot read {p}")
    return p.read_bytes()


async def test_md5_all_aio_error_stops_the_producer(tree: list[Path]) -> None:
    # The walk never ends by itself: only the group's cancellation can stop it.
    endless = itertools.cycle(tree)
    with pytest.raises(PermissionError, match=r"f7\.txt"):
        await md5_all_aio(endless, failing_read)


def test_md5_all_threads_error_stops_the_producer(tree: list[Path]) -> None:
    endless = itertools.cycle(tree)
    with pytest.raises(PermissionError, match=r"f7\.txt"):
        md5_all_threads(endless, failing_read)
