"""corral's higher patterns: fan-out/fan-in, pipelines, or-done, tee.

Layout (see docs/design.md, "Patterns"):

* ``_common``: the flavour-neutral half, once: stage specs and argument checks, the
  per-item error policy, :class:`Outcome`, statistics and progress, and ``FlowRun``, the
  engine that wires stages with bounded channels, starts and stops workers (tasks and
  threads, in one run), records the first error and knows when everything has stopped.
* ``_aio``: the asyncio flavour's front ends (``fan_out``/``pipeline`` handles,
  ``or_done``, ``tee``, ``fan_in``) and the worker loop run by *task* workers.
* ``_threads``: GENERATED from ``_aio`` by ``scripts/unasync_patterns.py`` (the thread
  flavour's front ends, and the worker loop run by *thread* workers). Never edit it by
  hand; a test fails when it is out of date.
* ``_rt_aio`` / ``_rt_threads``: the few lines where the flavours truly differ (how to
  wait, spawn, and run on an executor), imported by the two modules above.

A run in either flavour may use both worker loops: the asyncio flavour runs plain
functions on threads, and the thread flavour runs coroutine functions as tasks on a
private event loop thread.
"""
