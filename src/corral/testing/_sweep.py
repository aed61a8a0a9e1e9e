"""The cancellation sweep: :func:`cancel_sweep` cancels at every scheduling step."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ._explore import (
    CANCEL_AT_ENV,
    Scenario,
    ScheduleFailure,
    describe_seeds,
    replay_hint,
    run_schedule,
    scenario_name,
    seeds_from_env,
)


@dataclass(frozen=True)
class SweepReport:
    """What :func:`cancel_sweep` tried."""

    scenario: str
    runs: int  #: runs with a cancellation step (the uncancelled base runs not counted)
    landed: int  #: runs in which a target was still live when cancelled
    max_steps: int  #: the longest uncancelled run, in task steps


def cancel_sweep(
    scenario: Scenario[object],
    *,
    seeds: Iterable[int] = (0,),
    virtual_clock: bool = True,
    max_steps: int = 200_000,
    deadlock_timeout: float = 10.0,
) -> SweepReport:
    """Cancel the scenario's targets at every scheduling step, one run per step.

    For each seed: one run without cancellation counts the task steps ``n``; then runs
    ``k = 0 .. n`` cancel the targets registered with :meth:`Schedule.cancel_target` just
    before step ``k``. The scenario checks its own invariants after the cancellation (no
    item lost or duplicated, ...); each run also gets :func:`run_schedule`'s checks (no
    waiter left queued, no permit held, no task pending). Raises
    :class:`ScheduleFailure` naming the seed and step. ``CORRAL_SEED`` and
    ``CORRAL_CANCEL_AT`` in the environment narrow the sweep to one run.
    """
    name = scenario_name(scenario)
    seed_list = seeds_from_env(seeds, "cancel_sweep")
    forced_k = os.environ.get(CANCEL_AT_ENV)
    print(f"corral.testing.cancel_sweep: {name}, seeds {describe_seeds(seed_list)}")
    runs = landed = longest = 0
    for seed in seed_list:
        cancel_at: int | None = None
        try:
            base = run_schedule(
                scenario,
                seed,
                virtual_clock=virtual_clock,
                max_steps=max_steps,
                deadlock_timeout=deadlock_timeout,
            )
            longest = max(longest, base.steps)
            points = [int(forced_k)] if forced_k else range(base.steps + 1)
            for cancel_at in points:
                r = run_schedule(
                    scenario,
                    seed,
                    cancel_at=cancel_at,
                    virtual_clock=virtual_clock,
                    max_steps=max_steps,
                    deadlock_timeout=deadlock_timeout,
                )
                runs += 1
                landed += r.cancel_landed
        except Exception as exc:
            at = "without cancellation" if cancel_at is None else f"cancelled at step {cancel_at}"
            raise ScheduleFailure(
                f"{name} failed under seed {seed}, {at}: {type(exc).__name__}: {exc}\n"
                f"{replay_hint(scenario, seed, cancel_at)}",
                seed,
                cancel_at,
            ) from exc
    return SweepReport(name, runs, landed, longest)
