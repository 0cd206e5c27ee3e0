"""The processes bench starts (redis-server, rva init, rva gears, rva capture, rva web) in a work
directory of their own, what each costs in CPU and memory, and a child that fails named with
its command, exit status and last lines."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import site
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

import rva
from rva import const
from rva.config import ConfigError, GearSection
from rva.connection import connect
from rva.gears import GEAR_TYPES

WARMUP_S = 3.0
TAIL_LINES = 20  # of a failed child's output, in the error
INIT_TIMEOUT_S = 120.0
RESULTS_TIMEOUT_S = 60.0


class BenchError(Exception):
    """The benchmark could not run; the message says which step failed, why, and where the
    logs are."""


def _status(code: int | None) -> str:
    if code is None:
        return "did not finish"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def child_failed(what: str, argv: Sequence[str], code: int | None, output: str) -> BenchError:
    """The error for a child that failed: its command, exit status and last lines of output."""
    lines = output.rstrip().splitlines()[-TAIL_LINES:]
    tail = "\n".join(f"  | {line}" for line in lines) if lines else "  (it printed nothing)"
    return BenchError(
        f"{what} {_status(code)}\n  command: {shlex.join(argv)}\n"
        f"  last {len(lines)} lines of its output:\n{tail}"
    )


def redis_server() -> tuple[str, str | None]:
    """A redis-server binary and, when one is found, the RedisTimeSeries module beside it."""
    candidates = [os.environ.get("RVA_REDIS_SERVER"), shutil.which("redis-server")]
    if os.environ.get("RVA_CACHE"):  # a development checkout: Redis Stack with TimeSeries
        candidates.insert(1, str(Path(os.environ["RVA_CACHE"]) / "redis-stack" / "redis-server"))
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    if found is None:
        raise ConfigError("bench: no redis-server found (set RVA_REDIS_SERVER)")
    # Absolute (redis-server chdirs to --dir first), but not resolved: Debian's redis-server is
    # a symlink whose target's name selects what the binary does.
    server = str(Path(found).absolute())
    module = os.environ.get("RVA_REDIS_TS_MODULE")
    beside = Path(server).parent / "redistimeseries.so"
    if not module and beside.is_file():
        module = str(beside)
    if module:
        module = str(Path(module).absolute())
    return server, module


def child_env(work: Path) -> dict[str, str]:
    """The children's environment: bench's private config and, whatever the current directory
    was, the very rva package this process runs (children run in `work`, so a checkout's rva/
    cannot shadow an installed one, nor an installed one the checkout being run)."""
    env = {**os.environ, const.ENV_CONFIG: str(work / "rva.toml")}
    env.pop(const.ENV_REDIS_URL, None)
    env.pop("NOTIFY_SOCKET", None)  # bench's children are no service of systemd's
    root = str(Path(rva.__file__).resolve().parent.parent)
    sites = {str(Path(p).resolve()) for p in site.getsitepackages()}
    if root not in sites:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def toml_value(value: object) -> str:
    # JSON's strings, numbers and booleans are TOML's (without \u escapes of non-ASCII).
    return json.dumps(value, ensure_ascii=False)


def bench_config(
    url: str, source: str, gear: GearSection, *, fps: float = 0, web_port: int = 0
) -> str:
    """The children's rva.toml: one camera on the footage at max rate (or at ``fps``), the gear
    settings of the bare loop (so every phase runs the same detector), the private Redis."""
    camera = f'rate = "native"\nfps = {fps}' if fps else 'rate = "max"'
    lines = [
        f"[redis]\nurl = {toml_value(url)}",
        f"[cameras.bench]\nsource = {toml_value(source)}\n{camera}\nmaxlen = 200",
        "[gear]",
        *(f"{k} = {toml_value(v)}" for k, v in gear.model_dump().items()),
    ]
    if web_port:
        lines.append(f'[web]\nhost = "127.0.0.1"\nport = {web_port}')
    return "\n".join(lines) + "\n"


class Proc:
    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path
    ) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.handle = log.open("wb")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self.handle, stderr=subprocess.STDOUT
        )
        self.cpu_s = self.wall_s = 0.0  # over the measured windows (mark() ... unmark())
        self.opened: tuple[float, float] | None = None

    def check(self) -> None:
        """Raise a BenchError, with its last lines, when this child has ended."""
        code = self.popen.poll()
        if code is not None:
            self.handle.flush()
            raise child_failed(self.name, self.argv, code, self.output())

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            return 0.0

    def peak_rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def mark(self) -> None:
        """Start a measured window."""
        self.opened = (self.cpu_seconds(), time.monotonic())

    def unmark(self) -> None:
        """End the measured window, adding its CPU and wall time to the totals."""
        if self.opened is not None:
            (cpu0, t0), self.opened = self.opened, None
            self.cpu_s += self.cpu_seconds() - cpu0
            self.wall_s += time.monotonic() - t0

    def usage(self) -> dict[str, float]:
        """CPU over the measured windows (the open one included), in % of one core."""
        self.unmark()
        return {
            "cpu_percent": round(self.cpu_s / max(self.wall_s, 1e-6) * 100, 1),
            "peak_rss_mb": round(self.peak_rss_mb(), 1),
        }

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            self.popen.send_signal(signal.SIGCONT)  # a child paused by bench must see it
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.handle.close()


def run_init(rva_argv: list[str], env: dict[str, str], work: Path) -> None:
    argv = [*rva_argv, "init"]
    try:
        proc = subprocess.run(
            argv,
            env=env,
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=INIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
        raise child_failed("rva init", argv, None, out) from None
    (work / "init.log").write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0:
        raise child_failed("rva init", argv, proc.returncode, proc.stdout)


def start(
    work: Path,
    gear: GearSection,
    model_cache: Path,
    services: Sequence[str],
    procs: dict[str, Proc],
) -> tuple[redis.Redis, str | None]:
    """A private redis-server, `rva init`, then the services (rva <name>) on work/rva.toml,
    running until the first result is written; each process goes into ``procs`` as it starts
    (redis first), and the caller stops them, also on error. Returns a client and the
    TimeSeries module (None without)."""
    server, module = redis_server()
    sock = work / "redis.sock"
    env = {**child_env(work), const.ENV_MODEL_CACHE: str(model_cache)}
    rva_argv = [sys.executable, "-m", "rva"]
    redis_argv = [server, "--port", "0", "--unixsocket", str(sock), "--save", ""]
    redis_argv += ["--appendonly", "no", "--dir", str(work)]
    if module:
        redis_argv += ["--loadmodule", module]
    procs["redis"] = Proc("redis-server", redis_argv, env, work / "redis.log", work)
    client = connect(f"unix://{sock}", name="rva-bench")
    deadline = time.monotonic() + 10
    while True:
        procs["redis"].check()
        try:
            client.ping()
            break
        except (redis.ConnectionError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise child_failed(
                    "redis-server (no answer within 10 s)",
                    redis_argv,
                    None,
                    procs["redis"].output(),
                ) from None
            time.sleep(0.05)
    run_init(rva_argv, env, work)
    for name in services:
        procs[name] = Proc(f"rva {name}", [*rva_argv, name], env, work / f"{name}.log", work)
    results = GEAR_TYPES[gear.type].results_key("bench")
    deadline = time.monotonic() + RESULTS_TIMEOUT_S
    while not client.xlen(results):
        for p in procs.values():
            p.check()
        if time.monotonic() > deadline:
            tails = "\n".join(
                str(child_failed(p.name, p.argv, None, p.output()))
                for p in procs.values()
                if p.name != "redis-server"
            )
            raise BenchError(f"no results in {results} within {RESULTS_TIMEOUT_S:.0f} s\n{tails}")
        time.sleep(0.1)
    return client, module


@contextlib.contextmanager
def children(work: Path) -> Iterator[dict[str, Proc]]:
    """The processes of one phase: all stopped (last started first) however the phase ends; the
    work directory removed after a clean end, kept (and named) after a failure."""
    procs: dict[str, Proc] = {}
    try:
        yield procs
    except BenchError as exc:
        raise BenchError(f"{exc}\nlogs kept in {work}") from None
    except BaseException:
        print(f"rva bench: logs kept in {work}", file=sys.stderr)
        raise
    finally:
        for p in reversed(list(procs.values())):
            p.stop()
    shutil.rmtree(work, ignore_errors=True)
