"""The article's singleflight snippet (``CachedService.GetUser``) in Python, with
``corral.SingleFlight``.

Go::

    func (s *CachedService) GetUser(ctx context.Context, id string) (*User, error) {
        if user, err := s.cache.Get(ctx, id); err == nil {
            return user, nil
        }
        // Deduplicate concurrent DB calls for the same ID
        result, err, _ := s.group.Do(id, func() (interface{}, error) {
            user, err := s.db.GetUser(ctx, id)
            if err != nil {
                return nil, err
            }
            s.cache.Set(ctx, id, user, 5*time.Minute)
            return user, nil
        })
        ...
    }

"100 concurrent requests for the same user result in 1 database query." One difference
on purpose: the shared query must not use the *first caller's* ctx (if that request is
cancelled, Go's version cancels the query for all 99 others). In corral the query belongs
to no caller: it watches ``SingleFlight.current_context()``, which is cancelled only when
every caller has left. Run it: ``python docs/examples/singleflight.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import corral
import corral.threads


@dataclass(frozen=True)
class User:
    id: str
    name: str


class Database:
    def __init__(self) -> None:
        self.queries = 0

    async def get_user(self, ctx: corral.Context, user_id: str) -> User:
        self.queries += 1
        async with ctx.cancel_scope():  # the query stops if its Context is cancelled
            await asyncio.sleep(0.05)  # the round trip
        return User(user_id, f"user-{user_id}")


class Cache:
    def __init__(self) -> None:
        self._items: dict[str, tuple[User, float]] = {}

    def get(self, key: str) -> User | None:
        item = self._items.get(key)
        if item is None or item[1] < time.monotonic():
            return None
        return item[0]

    def set(self, key: str, user: User, ttl: float) -> None:
        self._items[key] = (user, time.monotonic() + ttl)


# --8<-- [start:twin]
class CachedService:
    def __init__(self, db: Database, cache: Cache) -> None:
        self.db = db
        self.cache = cache
        self.group: corral.SingleFlight[str, User] = corral.SingleFlight()

    async def get_user(self, user_id: str) -> User:
        # Check cache first
        user = self.cache.get(user_id)
        if user is not None:
            return user

        # Deduplicate concurrent DB calls for the same ID
        async def load() -> User:
            user = await self.db.get_user(corral.SingleFlight.current_context(), user_id)
            self.cache.set(user_id, user, ttl=5 * 60)
            return user

        return await self.group.do(user_id, load)


# --8<-- [end:twin]
async def main() -> None:
    db = Database()
    service = CachedService(db, Cache())

    users = await asyncio.gather(*(service.get_user("42") for _ in range(100)))
    print(f"100 concurrent requests for user 42: {db.queries} database query")
    print(f"  every request got {users[0]}: {all(u == users[0] for u in users)}")

    await asyncio.gather(*(service.get_user("42") for _ in range(100)))
    print(f"100 more requests, now cached: {db.queries} database query in total")

    # The first caller gives up early; the query is not its own, the others still get it.
    db = Database()
    service = CachedService(db, Cache())

    async def impatient() -> str:
        try:
            async with asyncio.timeout(0.01):  # shorter than the 0.05 s query
                return str(await service.get_user("7"))
        except TimeoutError:
            return "timed out"

    first, *others = await asyncio.gather(impatient(), *(service.get_user("7") for _ in range(9)))
    print(f"first request for user 7: {first}")
    print(f"  the other {len(others)} got {others[0]}, from {db.queries} query")

    threads_flavour()


def threads_flavour() -> None:
    """The same table from threads: corral.threads.SingleFlight, with Go's DoChan."""
    sf = corral.threads.SingleFlight[str, User]()
    queries = 0
    may_answer = threading.Event()

    def query(user_id: str) -> User:  # a blocking driver, in the call's own thread
        nonlocal queries
        queries += 1
        may_answer.wait()
        return User(user_id, f"user-{user_id}")

    chans = [sf.do_chan("9", query, "9") for _ in range(20)]  # all join at once
    may_answer.set()
    results = [ch.recv() for ch in chans]  # each a channel: select works on them too
    print(f"threads: 20 requests for user 9: {queries} query, shared: {results[0].shared}")


if __name__ == "__main__":
    asyncio.run(main())
