"""The outcome a SingleFlight leader publishes for its followers (both flavours): one kind
byte, then the payload."""

from __future__ import annotations

from typing import Any

from .common import RemoteError, Serializer, serializer_name

__all__ = ["ABANDONED", "ERROR", "FOREIGN", "VALUE", "dump_outcome", "load_outcome"]

VALUE, ERROR, FOREIGN, ABANDONED = b"v", b"e", b"x", b"a"


def dump_outcome(serializer: Serializer, value: Any, error: BaseException | None) -> bytes:
    """What the leader publishes: the value, or the exception (serialized if the serializer
    can, else its type name and message)."""
    if error is None:
        return VALUE + serializer.dumps(value)
    try:
        return ERROR + serializer.dumps(error)
    except Exception:
        text = f"{type(error).__qualname__}\n{error}"
        return FOREIGN + text.encode("utf-8", "replace")


def load_outcome(serializer: Serializer, data: bytes) -> Any:
    """The value a follower returns, or raises the leader's exception."""
    kind, payload = data[:1], data[1:]
    if kind == VALUE:
        try:
            return serializer.loads(payload)
        except Exception as e:
            raise RemoteError(
                f"the shared call's value could not be decoded by serializer"
                f" {serializer_name(serializer)}: {e!r}"
            ) from e
    if kind == ERROR:
        try:
            exc = serializer.loads(payload)
        except Exception as e:
            raise RemoteError(
                "the shared call failed; its exception could not be decoded by serializer"
                f" {serializer_name(serializer)}: {e!r}"
            ) from e
        if isinstance(exc, BaseException):
            raise exc
        raise RemoteError(f"the shared call failed with {exc!r}")
    type_name, _, message = payload.decode("utf-8", "replace").partition("\n")
    raise RemoteError(
        f"the shared call failed in another process: {type_name}: {message}", type_name
    )
