"""What /healthz and `rva status` say when Redis cannot save its snapshot, against a real
redis-server whose snapshot file cannot be replaced (a directory stands where dump.rdb goes):
"the last good one is N min old" only when one was saved, never for a Redis that never saved."""

from __future__ import annotations

import time
from pathlib import Path

from rva import health
from tests.conftest import RedisServer, wait_for


def _bgsave_done(server: RedisServer) -> dict:
    client = server.client()
    client.bgsave()
    wait_for(lambda: client.info("persistence")["rdb_bgsave_in_progress"] == 0, 30, what="BGSAVE")
    return client.info("persistence")


def test_a_snapshot_that_never_succeeded_is_not_called_the_last_good_one(
    redis_plain: RedisServer,
) -> None:
    blocker = Path(redis_plain.datadir) / "dump.rdb"
    blocker.mkdir()
    (blocker / "keep").write_text("")  # rename(temp file, dump.rdb) fails: a full disk's effect
    client = redis_plain.client()
    client.set("k", "v")
    info = _bgsave_done(redis_plain)
    assert info["rdb_last_bgsave_status"] == "err"
    said = health.redis_problems(client, time.time())
    assert len(said) == 1 and said[0].startswith("Redis cannot save its snapshot"), said
    assert "none saved since Redis started 0 min ago, and everything counted" in said[0]
    assert "last good one" not in said[0]
    (blocker / "keep").unlink()
    blocker.rmdir()
    time.sleep(2.5)  # a save in a later second than Redis's start (both are whole seconds)
    assert _bgsave_done(redis_plain)["rdb_last_bgsave_status"] == "ok"
    blocker.unlink()  # the good snapshot
    assert health.redis_problems(client, time.time()) == []
    blocker.mkdir()
    (blocker / "keep").write_text("")
    info = _bgsave_done(redis_plain)
    assert info["rdb_last_bgsave_status"] == "err"
    said = health.redis_problems(client, time.time() + 120)  # two minutes on
    assert "the last good one is 2 min old" in said[0], said


def test_a_read_only_user_without_eval_still_sees_the_frames(redis_plain: RedisServer) -> None:
    """The device's default Redis user may read but not EVAL (`rva status` and `rva doctor`
    run as root use it): the stream's length and newest frame come from XINFO STREAM then."""
    admin = redis_plain.client()
    admin.execute_command(
        "ACL", "SETUSER", "reader", "on", "nopass", "~*", "resetchannels",
        "-@all", "+@connection", "+@read", "-@dangerous", "+time", "+info",
    )  # fmt: skip
    for n in range(3):
        admin.xadd("camera:0", {"count": n, "image": b"x"})
    url = redis_plain.url.replace("redis://", "redis://reader@")
    from rva.connection import connect

    reader = connect(url)
    snap = health.snapshot(reader, ["0"], "rva-gears")
    state = snap.cameras["0"]
    assert state.frames == 3 and state.frame_age_s is not None and state.frame_age_s < 60, state
    assert not any("no frames yet" in p for p in state.problems), state.problems
