"""SEM_FAST and SEM_FAST_RELEASE, the lean uncontended pair, against the scripts they copy in
line (``# inline of corral._redis.scripts.SEM_ACQUIRE`` / ``SEM_RELEASE``, registered in
tests/inlines/registry.py).

Two twin semaphores, one driven by the originals alone and one as the client drives it (the
lean script first, the original when it answers 0), go through the same generated sequences:
acquires of every weight with two leases (one longer than any asked for before: the grace
field grows), under the semaphore's size or another one (a size conflict), releases of
holders, of waiters and of unknown tokens, a holder whose lease ran out, Redis losing the
state (a new epoch and its grace) and the grace running out. After every step both must
agree on the reply (granted, queued and whether a grace runs, a conflict, what a release
found) and on the whole state: every field of the semaphore's hash (a fence only as present:
its value is the server's clock), the holders and the queue in order, which keys exist and
which carry an expiry, and the epoch's fields but its clock readings. Fences must increase
strictly on each side.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from corral._redis import scripts
from corral._redis.common import SemKeys

SIZE = 4
LEASES = (1000, 5000)  # ms
SEQUENCES = 60
STEPS = 25


class _Side:
    def __init__(self, client: Any, name: str, lean: bool) -> None:
        self.c = client
        self.lean = lean
        self.keys = SemKeys(name).keys
        self.fast_keys = [k for i, k in enumerate(self.keys) if i != 3]
        self.s = {n: client.register_script(getattr(scripts, n)) for n in scripts.__all__}
        self.fences: list[int] = []

    def acquire(self, tok: str, n: int, lease: int, size: int) -> tuple[Any, ...]:
        if self.lean:
            f = self.s["SEM_FAST"](keys=self.fast_keys, args=[lease, tok, n, size])
            if f:
                self._fence(int(f))
                return ("granted",)
        r = self.s["SEM_ACQUIRE"](keys=self.keys, args=[lease, tok, n, size])
        if r[0] == 1:
            self._fence(int(r[1]))
            return ("granted",)
        if r[0] == 0:
            return ("queued", int(r[1]) > 0)
        return ("conflict", int(r[1]))

    def _fence(self, f: int) -> None:
        assert not self.fences or f > self.fences[-1], "fences must increase strictly"
        self.fences.append(f)

    def release(self, tok: str, lease: int) -> int:
        if self.lean:
            r = self.s["SEM_FAST_RELEASE"](keys=self.fast_keys, args=[lease, tok])
            if r == 1:
                return 1
            assert r == 0
        return int(self.s["SEM_RELEASE"](keys=self.keys, args=[lease, tok]))

    def expire(self, tok: str) -> None:
        """``tok``'s lease ran out (as a holder or as a waiter)."""
        h, qx = self.keys[1], self.keys[3]
        if self.c.zscore(h, tok) is not None:
            self.c.zadd(h, {tok: 1})
        if self.c.zscore(qx, tok) is not None:
            self.c.zadd(qx, {tok: 1})

    def lose_state(self) -> None:
        self.c.delete(*self.keys)

    def end_grace(self) -> None:
        """The epoch began long ago (its grace is over)."""
        e = self.keys[4]
        t0 = self.c.hget(e, "t0")
        if t0 is not None:
            self.c.hset(e, "t0", str(int(t0) - 10**10))

    def state(self) -> tuple[Any, ...]:
        m, h, q, qx, e = self.keys
        meta = {
            k.decode(): (v.decode() if not k.startswith(b"x") else "fence")
            for k, v in self.c.hgetall(m).items()
        }
        ep = self.c.hgetall(e)
        return (
            meta,
            sorted(x.decode() for x in self.c.zrange(h, 0, -1)),
            [x.decode() for x in self.c.zrange(q, 0, -1)],
            sorted(x.decode() for x in self.c.zrange(qx, 0, -1)),
            [(self.c.exists(k), self.c.pttl(k) >= 0) for k in (m, h, q, qx)],
            (b"t0" in ep, b"f" in ep, ep.get(b"g")),
        )


@pytest.mark.timeout(180)
def test_the_lean_pair_agrees_with_sem_acquire_and_sem_release(client: Any) -> None:
    for seed in range(SEQUENCES):
        rnd = random.Random(seed)
        orig = _Side(client, f"semfo{seed}", lean=False)
        lean = _Side(client, f"semfl{seed}", lean=True)
        tokens: list[str] = []
        trace: list[str] = []
        try:
            for step in range(STEPS):
                op = rnd.choices(
                    ["acquire", "release", "expire", "lose", "age", "stranger"],
                    weights=[10, 7, 1, 1, 3, 1],
                    k=1,
                )[0]
                if op == "acquire":
                    tok = f"t{step}"
                    n = rnd.choice([1, 1, 2, SIZE])
                    lease = rnd.choice(LEASES)
                    size = SIZE if rnd.random() < 0.9 else SIZE + 1
                    trace.append(f"acquire({tok}, n={n}, lease={lease}, size={size})")
                    got = orig.acquire(tok, n, lease, size)
                    assert got == lean.acquire(tok, n, lease, size), "acquire's reply"
                    tokens.append(tok)
                elif op in ("release", "stranger"):
                    tok = "nobody" if op == "stranger" or not tokens else rnd.choice(tokens)
                    lease = rnd.choice(LEASES)
                    trace.append(f"release({tok}, lease={lease})")
                    assert orig.release(tok, lease) == lean.release(tok, lease), "release's reply"
                elif op == "expire" and tokens:
                    tok = rnd.choice(tokens)
                    trace.append(f"{tok}'s lease ran out")
                    for side in (orig, lean):
                        side.expire(tok)
                elif op == "lose":
                    trace.append("Redis lost the state")
                    for side in (orig, lean):
                        side.lose_state()
                elif op == "age":
                    trace.append("the epoch's grace ended")
                    for side in (orig, lean):
                        side.end_grace()
                assert orig.state() == lean.state(), "state"
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, after {trace}: {exc}") from None
        finally:
            orig.lose_state()
            lean.lose_state()


def test_the_sequences_reach_the_lean_paths(client: Any) -> None:
    """The sequences above are worth something only if the lean scripts decide in them."""
    side = _Side(client, "semfcov", lean=True)
    assert side.s["SEM_FAST"](keys=side.fast_keys, args=[1000, "a", 1, SIZE]) == 0  # new epoch
    assert side.acquire("a", 1, 1000, SIZE) == ("queued", True)  # its grace
    side.end_grace()
    assert side.release("a", 1000) == 2  # (withdrawn, by SEM_RELEASE)
    assert side.s["SEM_FAST"](keys=side.fast_keys, args=[1000, "b", 1, SIZE]) > 0
    assert side.s["SEM_FAST_RELEASE"](keys=side.fast_keys, args=[1000, "b"]) == 1
    side.lose_state()


# --- the client: the lean pair serves the uncontended acquire, and survives SCRIPT FLUSH ------


def _recording(client: Any) -> list[Any]:
    """The shas of the EVALSHA calls ``client`` makes from now on (in call order)."""
    shas: list[Any] = []
    real = client.execute_command

    def execute_command(*args: Any, **kw: Any) -> Any:
        if args and args[0] == "EVALSHA":
            shas.append(args[1])
        return real(*args, **kw)

    client.execute_command = execute_command
    return shas


def test_threads_uncontended_pair_runs_the_lean_scripts_and_survives_script_flush(
    redis_url: str,
) -> None:
    import corral.threads.redis

    from .conftest import all_nodes, connect

    with connect(redis_url) as c:
        sem = corral.threads.redis.Semaphore(c, "semfthr", 2, lease=0.3)
        sem.acquire(1).release()  # (the name's first use waits its grace)
        shas = _recording(c)
        with sem.acquire(1) as p:
            first = p.fence
        assert shas == [sem._fast[0], sem._fast[1]]  # one lean call each way, nothing else
        c.script_flush()  # NOSCRIPT next: the wrapper loads the script, once
        with sem.acquire(2) as p:
            assert p.fence > first
        with sem.acquire(1):
            pass
        assert (
            shas.count(sem._fast[0]) == shas.count(sem._fast[1]) == 4
        )  # (NOSCRIPT, after the load, then one call)
        assert sem.statistics().acquired == 4
        assert c.keys("{semfthr}:*", **all_nodes(c)) == [b"{semfthr}:e"]  # (the epoch only)


async def test_async_uncontended_pair_runs_the_lean_scripts_and_survives_script_flush(
    redis_url: str,
) -> None:
    import corral.redis

    from .conftest import all_nodes, connect_async

    async with connect_async(redis_url) as c:
        sem = corral.redis.Semaphore(c, "semfaio", 2, lease=0.3)
        await (await sem.acquire(1)).release()
        shas = _recording(c)
        async with sem.acquire(1) as p:
            first = p.fence
        assert shas == [sem._fast[0], sem._fast[1]]
        await c.script_flush()
        async with sem.acquire(2) as p:
            assert p.fence > first
        async with sem.acquire(1):
            pass
        assert shas.count(sem._fast[0]) == shas.count(sem._fast[1]) == 4
        assert sem.statistics().acquired == 4
        assert await c.keys("{semfaio}:*", **all_nodes(c)) == [b"{semfaio}:e"]
