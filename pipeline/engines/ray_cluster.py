"""Starting, reaching and leaving a Ray cluster for ``--engine ray``.

Without ``--ray-address`` the driver starts a Ray of its own on this machine, on loopback
only. ``ray`` reads some settings when it is imported, so they go into ``os.environ``
first (and every Ray process inherits them):

- ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray resolve this node's address to
  127.0.0.1. Without it, ``_node_ip_address="127.0.0.1"`` is replaced by the first routable
  address and Ray's servers listen on every interface (measured; ``tests/test_ray.py``
  checks the listening sockets).
- ``RAY_AUTH_MODE=token`` with a fresh random ``RAY_AUTH_TOKEN`` per run: other local users
  cannot drive the cluster, and nothing is written to ``~/.ray``.
- ``RAY_USAGE_STATS_ENABLED=0``: no usage report.

Its files (logs, sockets) live in ``/tmp/pipeline-ray-<uid>/<run>/`` and are removed at the
end. A driver killed with SIGKILL leaves two Ray agents running (Ray issue #52385); the
next start finds them by the files they hold open under a dead driver's directory and stops
them (``sweep``). Nothing here runs ``ray stop``: it stops every Ray on the machine.

With ``--ray-address HOST:PORT`` (or ``auto``) the driver joins a running cluster and leaves
it running; the environment (``RAY_AUTH_TOKEN`` included) is the user's. Every node needs
this project installed in the Python it runs (nothing is shipped or downloaded at run time).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.core.errors import PipelineError

#: set before ``import ray`` for a cluster of our own (see the module docstring)
LOOPBACK_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "token",
}
#: shared memory for results in flight; Ray spills to disk beyond it
OBJECT_STORE_BYTES = 256 * 2**20
NO_CLUSTER_FIX = "start one with `ray start --head` (see README, 'Scale out with Ray') or leave out --ray-address"


def temp_root() -> Path:
    """Where local clusters keep their files: short, since Ray puts unix sockets there (a
    socket path has at most 107 bytes)."""
    return Path("/tmp") / f"pipeline-ray-{os.getuid()}"


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT``; None for ``auto``. Ray Client addresses (``ray://``)
    are not supported: the driver must run on a node of the cluster, as the only writer."""
    if address == "auto":
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        raise PipelineError(f"--ray-address {address!r} is not HOST:PORT or auto", "pass e.g. 10.0.0.5:6379 or auto")
    return host.strip("[]"), int(port)


def check_address(address: str) -> None:
    """``auto`` or ``HOST:PORT`` with something listening there (``ray.init`` would wait for
    minutes on an address where nothing listens)."""
    where = parse_address(address)
    if where is None:
        env = os.environ.get("RAY_ADDRESS")
        if env and "://" not in env:
            check_address(env)
        return
    try:
        socket.create_connection(where, timeout=3).close()
    except OSError as exc:
        raise PipelineError(f"no Ray cluster at {address} ({exc.strerror or exc})", NO_CLUSTER_FIX) from None


class Cluster:
    """A connection to Ray: a local cluster started here, or a running one joined. Use as a
    context manager; leaving it shuts down what it started and restores the environment."""

    def __init__(self, address: str | None, cpus: int | None = None) -> None:
        self.address = address
        #: logical CPUs of a local cluster (one per worker at least)
        self.local_cpus = max(cpus or 0, os.cpu_count() or 1)
        self.own = address is None
        self.temp: Path | None = None
        self.saved_env: dict[str, str | None] = {}
        self.saved_sigterm: Any = None
        self.ray: Any = None
        self.swept: list[str] = []

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self.address is not None:
            check_address(self.address)
        else:
            env = {**LOOPBACK_ENV, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
            for key, value in env.items():
                self.saved_env[key] = os.environ.get(key)
                os.environ[key] = value
            root = temp_root()
            root.mkdir(mode=0o700, exist_ok=True)
            self.swept = sweep(root)
            self.temp = Path(tempfile.mkdtemp(prefix="", dir=root))
        self.saved_sigterm = signal.getsignal(signal.SIGTERM)
        import ray

        self.ray = ray
        try:
            if self.own:
                ray.init(
                    address="local",
                    num_cpus=self.local_cpus,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    _temp_dir=str(self.temp),
                    object_store_memory=OBJECT_STORE_BYTES,
                    configure_logging=False,
                    log_to_driver=False,
                )
            else:
                ray.init(address=self.address, configure_logging=False, log_to_driver=False)
        except Exception as exc:
            said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if self.own:
                raise PipelineError(
                    f"cannot start a local Ray cluster: {said}", "see the Ray logs under " + str(self.temp)
                ) from None
            raise PipelineError(
                f"cannot join the Ray cluster at {self.address}: {said}",
                "check the address and that RAY_AUTH_TOKEN is the cluster's; " + NO_CLUSTER_FIX,
            ) from None

    @property
    def cpus(self) -> int:
        return int(self.ray.cluster_resources().get("CPU", 0))

    def describe(self) -> str:
        return "a local Ray on 127.0.0.1" if self.own else f"the Ray cluster at {self.address}"

    def close(self) -> None:
        if self.ray is not None and self.ray.is_initialized():
            # a cluster that died first (Ctrl-C reaches its processes too); Ray's C++ core logs
            # each task it cannot report back while it shuts down ("Failed to push error to
            # driver"), which is no news to a user who pressed Ctrl-C or saw the run's error
            with contextlib.suppress(Exception), _quiet_stderr():
                self.ray.shutdown()
        if self.saved_sigterm is not None:  # ray.init installs its own
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signal.SIGTERM, self.saved_sigterm)
            self.saved_sigterm = None
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.saved_env = {}
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block (C++ writes there, not to ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def sweep(root: Path) -> list[str]:
    """Stop what the local clusters of dead drivers left behind under ``root``, and remove
    their files; returns ``pid:name`` of each process stopped.

    Ray names a session folder ``session_<date>_<time>_<usec>_<pid of its driver>``. When
    that driver is gone (or the pid was reused: the process is younger than the folder),
    every process still holding a file open under the session's ``logs/`` belongs to that
    dead cluster. Matching by process name would be unsafe: Ray renames its processes, and
    another user's Ray has the same names."""
    import psutil

    stopped: list[str] = []
    for run in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        sessions = list(run.glob("session_2*"))
        live = False
        for session in sessions:
            owner = session.name.rsplit("_", 1)[-1]
            if owner.isdigit() and _alive(int(owner), session):
                live = True
                continue
            stopped += _stop_holders(psutil, str(session / "logs") + os.sep)
        if not live and (sessions or _stale(run)):
            shutil.rmtree(run, ignore_errors=True)
    return stopped


def _alive(pid: int, session: Path) -> bool:
    import psutil

    if pid == os.getpid():
        return True
    try:
        return bool(psutil.Process(pid).create_time() <= session.stat().st_ctime + 1)
    except (psutil.NoSuchProcess, OSError):
        return False


def _stale(run: Path) -> bool:
    """A run folder with no session yet: stale once no process of ours could still be starting it."""
    import time

    try:
        return time.time() - run.stat().st_mtime > 600
    except OSError:
        return False


def _stop_holders(psutil: Any, prefix: str) -> list[str]:
    stopped = []
    for proc in psutil.process_iter(["pid", "name", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
                    stopped.append(f"{proc.pid}:{proc.info['name']}")
                break
    return stopped
