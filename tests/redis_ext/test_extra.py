"""corral[redis] stays an optional extra: the core never imports it."""

from __future__ import annotations

import subprocess
import sys


def test_import_corral_does_not_import_redis() -> None:
    code = (
        "import sys, corral, corral.threads\n"
        "bad = sorted(m for m in sys.modules if m == 'redis' or m.startswith(('redis.', "
        "'corral.redis', 'corral._redis', 'corral.threads.redis')))\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_both_flavours_export_the_same_names() -> None:
    import corral.redis
    import corral.threads.redis

    assert set(corral.redis.__all__) == set(corral.threads.redis.__all__)
    for name in ("LeaseLost", "RedisUnavailable", "RemoteError", "SizeConflict"):
        assert getattr(corral.redis, name) is getattr(corral.threads.redis, name)
    assert corral.redis.Semaphore is not corral.threads.redis.Semaphore
    assert issubclass(corral.redis.SizeConflict, ValueError)
    assert issubclass(corral.redis.RedisUnavailable, corral.CorralError)
