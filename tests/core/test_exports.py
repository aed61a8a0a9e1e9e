"""``corral`` and ``corral.threads`` mirror each other name for name."""

from __future__ import annotations

import corral
import corral.threads

FLAVOURED = {
    "Channel",
    "Semaphore",
    "select",
    "RateLimit",
    "Limits",
}  # waiting differs: one per flavour


def test_corral_and_corral_threads_export_the_same_names() -> None:
    assert set(corral.__all__) == set(corral.threads.__all__)
    assert len(corral.__all__) == len(set(corral.__all__))
    assert len(corral.threads.__all__) == len(set(corral.threads.__all__))


def test_every_exported_name_exists() -> None:
    for ns in (corral, corral.threads):
        missing = [name for name in ns.__all__ if not hasattr(ns, name)]
        assert missing == [], f"{ns.__name__} lists names it does not define"


def test_flavour_neutral_names_are_the_very_same_objects() -> None:
    for name in (
        "Context",
        "CancelContext",
        "background",
        "with_cancel",
        "Cancelled",
        "ChannelClosed",
        "EndOfChannel",
        "WouldBlock",
        "DeadlineExceeded",
        "ChannelStatistics",
        "SemaphoreStatistics",
        "Selected",
        "RateLimitStatistics",
        "Grant",
    ):
        assert getattr(corral, name) is getattr(corral.threads, name), name


def test_primitive_names_differ_between_flavours() -> None:
    for name in FLAVOURED:
        assert getattr(corral, name) is not getattr(corral.threads, name), name
