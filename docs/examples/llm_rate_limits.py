"""500 LLM API calls under three limits at once: requests per minute, tokens per minute and
concurrent requests, with ``corral.RateLimit``, ``corral.Semaphore`` and ``corral.Limits``.

An LLM API allows N requests per minute *and* M tokens per minute *and* K requests in
flight. A call's token count is only known once its reply arrives, so each call reserves
an estimate (prompt + ``max_tokens``) and corrects it afterwards with ``grant.adjust``:
the unused tokens go back to the limit at once, for the calls that wait.

``Limits`` acquires all three atomically: a call waits holding nothing, so a request
never sits on a requests-per-minute slot while it waits for tokens (what three
sequential acquires do). Time is scaled down (one "minute" is 0.4 s) so the example runs
in a few seconds; the API is simulated.
Run it: ``python docs/examples/llm_rate_limits.py``.
"""

from __future__ import annotations

import asyncio
import random
import time

import corral

MINUTE = 0.4  # seconds: the scaled-down minute
CALLS = 500
RPM, TPM, IN_FLIGHT = 60, 10_000, 8
MAX_TOKENS = 200  # what a call may generate at most: reserved until the reply says

rpm = corral.RateLimit(RPM, per=MINUTE)  # burst 1: evenly spaced, never 61 in a minute
tpm = corral.RateLimit(TPM, per=MINUTE, burst=1_000)  # up to 1,000 tokens at once
conns = corral.Semaphore(IN_FLIGHT)
limits = corral.Limits(rpm, tpm, conns)


class Stats:
    def __init__(self) -> None:
        self.started: list[float] = []  # when each call got its grant
        self.tokens = self.reserved = 0
        self.now = self.peak = 0


async def fake_llm(prompt_tokens: int, rng: random.Random) -> int:
    """A reply after 20-120 ms (scaled), with the tokens it really used."""
    await asyncio.sleep(rng.uniform(0.02, 0.12))
    return prompt_tokens + rng.randint(20, MAX_TOKENS)


async def call(i: int, stats: Stats) -> None:
    rng = random.Random(i)  # each call's sizes are fixed by its number: same totals every run
    prompt = rng.randint(50, 150)
    estimate = prompt + MAX_TOKENS
    async with limits.acquire({tpm: estimate}) as grant:  # rpm: 1 and conns: 1 by default
        stats.started.append(time.monotonic())
        stats.reserved += estimate
        stats.now += 1
        stats.peak = max(stats.peak, stats.now)
        used = await fake_llm(prompt, rng)
        stats.now -= 1
        grant.adjust(tpm, used)  # refund what the reply did not use
        stats.tokens += used


def most_in_window(times: list[float], width: float) -> int:
    ts = sorted(times)
    j = most = 0
    for i, t in enumerate(ts):
        while j < len(ts) and ts[j] < t + width:
            j += 1
        most = max(most, j - i)
    return most


async def main() -> None:
    stats = Stats()
    start = time.monotonic()
    async with corral.Group() as g:
        for i in range(CALLS):
            await g.go(call, i, stats)
    minutes = (time.monotonic() - start) / MINUTE
    first, last = min(stats.started), max(stats.started)
    print(
        f"{CALLS} simulated LLM calls; limits: {RPM} requests/min, {TPM:,} tokens/min, "
        f"{IN_FLIGHT} at once (1 min = {MINUTE} s here)"
    )
    print(
        f"tokens: {stats.tokens:,} used; {stats.reserved:,} reserved up front, "
        f"{stats.reserved - stats.tokens:,} refunded by grant.adjust after the replies"
    )
    print(f"requests/min: achieved {(CALLS - 1) / ((last - first) / MINUTE):.1f} (limit {RPM})")
    bound = (tpm.burst + TPM * minutes) / minutes  # GCRA: burst + rate x time, at most
    print(
        f"tokens/min: achieved {stats.tokens / minutes:,.0f} "
        f"(limit {TPM:,}; with the 1,000-token burst, at most {bound:,.0f} over this run)"
    )
    print(f"most requests in any 1-min window: {most_in_window(stats.started, MINUTE)}")
    print(f"peak calls in flight: {stats.peak} (limit {IN_FLIGHT})")
    print(f"run time: {minutes:.1f} scaled minutes")


if __name__ == "__main__":
    asyncio.run(main())
