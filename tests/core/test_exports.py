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
    "Flow",
    "RelayChannel",
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


def test_import_corral_reaches_corral_threads_as_an_attribute() -> None:
    import subprocess
    import sys

    code = "import corral; print(corral.threads.Channel.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "corral._threads.channel"


def test_what_users_hold_can_be_named() -> None:
    # fan_out/pipeline return a Flow, the relays a RelayChannel: both importable, per flavour.
    assert type(corral.fan_out(str, [])) is corral.Flow
    assert type(corral.threads.fan_out(str, [])) is corral.threads.Flow
    assert issubclass(corral.RelayChannel, corral.Channel)
    assert issubclass(corral.threads.RelayChannel, corral.threads.Channel)
