"""corral's higher patterns: fan-out/fan-in, pipelines, or-done, tee.

Layout (see docs/design.md, "Patterns"):

* flavour-neutral, once: ``_plan`` (stage specs, argument checks, error policies,
  :class:`Outcome`, ``FlowPlan``), ``_stats`` (progress and statistics), ``_stage_run``
  (a stage's running state, the direct source, worker counters) and ``_engine``
  (``FlowRun``: wires stages with bounded channels, starts and stops workers, tasks and
  threads in one run, records the first error, knows when everything has stopped).
* ``_aio_workers`` / ``_aio_flow`` / ``_aio_relays``: the asyncio flavour's worker loops
  (run by *task* workers), its ``fan_out``/``pipeline`` handle, and ``or_done``, ``tee``,
  ``fan_in``.
* ``_threads_workers`` / ``_threads_flow`` / ``_threads_relays``: GENERATED from the
  ``_aio_*`` modules by ``scripts/unasync_patterns.py`` (the thread flavour; its loops are
  run by *thread* workers). Never edit them by hand; a test fails when one is stale.
* ``_workers``: both kinds of worker loop, handed to the engine by both front ends, so
  the engine imports neither flavour module.
* ``_rt_aio`` / ``_rt_threads``: the few lines where the flavours truly differ (how to
  wait, spawn, and run on an executor), imported by the flavour modules.

A run in either flavour may use both worker loops: the asyncio flavour runs plain
functions on threads, and the thread flavour runs coroutine functions as tasks on a
private event loop thread.
"""
