"""``replicas=N``: what both flavours share about waiting for replicas after a grant (no
I/O; the pipeline that runs a script and ``WAIT`` is ``aio.replicated`` and its twin)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .common import NotReplicated, RedisUnsupported

__all__ = ["Replicas", "check_replicas", "not_replicated"]


@dataclass(frozen=True, slots=True)
class Replicas:
    """``replicas=`` / ``replicas_timeout=`` checked: ``WAIT n timeout_ms`` after a grant."""

    n: int
    timeout_ms: int


#: ``replicas_timeout``'s default: this share of the lease, at most ``REPLICAS_TIMEOUT_MAX``.
REPLICAS_TIMEOUT_SHARE = 0.1
REPLICAS_TIMEOUT_MAX = 1.0


def check_replicas(
    replicas: object, replicas_timeout: object, lease_ms: int, client: object, what: str
) -> Replicas | None:
    """``replicas`` (an int >= 0; 0 is off) and ``replicas_timeout`` (seconds, default a
    tenth of the lease and at most 1 s; at most half the lease, which the wait uses up:
    the lease is timed from the request that granted it) -> a ``Replicas``, or None."""
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise TypeError(f"{what}: replicas must be an int, got {type(replicas).__name__}")
    if replicas < 0:
        raise ValueError(f"{what}: replicas must be >= 0, got {replicas}")
    if replicas_timeout is None:
        timeout = min(REPLICAS_TIMEOUT_MAX, lease_ms / 1000 * REPLICAS_TIMEOUT_SHARE)
    elif isinstance(replicas_timeout, bool) or not isinstance(replicas_timeout, int | float):
        raise TypeError(
            f"{what}: replicas_timeout must be a number of seconds or None,"
            f" got {type(replicas_timeout).__name__}"
        )
    else:
        timeout = replicas_timeout
    half = lease_ms / 2000
    if not (math.isfinite(timeout) and 0.001 <= timeout <= half):  # also rejects NaN
        raise ValueError(
            f"{what}: replicas_timeout must be a finite number of seconds in [0.001, {half:g}]"
            f" (half the lease), got {replicas_timeout!r}"
        )
    if replicas == 0:
        return None
    if hasattr(client, "get_node_from_key"):  # a RedisCluster (both flavours)
        raise RedisUnsupported(
            f"{what}: replicas= is not supported on a Redis Cluster client yet (WAIT must run"
            " on the connection to the slot's master that ran the grant); use a client of the"
            " master (e.g. from Sentinel), or replicas=0"
        )
    return Replicas(replicas, round(timeout * 1000))


def not_replicated(what: str, acked: int, rep: Replicas) -> NotReplicated:
    return NotReplicated(
        f"{what}: only {acked} of replicas={rep.n} acknowledged the grant within"
        f" {rep.timeout_ms / 1000:g} s; it was given back (a failover to a replica that missed"
        " it could grant it again)",
        acked,
        rep.n,
    )
