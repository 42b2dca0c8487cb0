"""A real Ray cluster for the tests: ``ray start --head --block`` on 127.0.0.1 with 2 CPUs,
in its own session and temp folder, with the loopback environment ``--engine ray`` uses for
its own clusters and a random token. Stopped by SIGKILL of its process group and of the
processes it started (never ``ray stop``, which stops every Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipeline.engines.ray_cluster import LOOPBACK_ENV
from tests.realserver import free_port

RAY = Path(sys.executable).parent / "ray"


@dataclass
class Head:
    address: str
    env: dict[str, str]  # what a driver needs to join: the loopback settings and the token
    proc: subprocess.Popen[bytes]
    temp: Path

    def processes(self) -> list[psutil.Process]:
        """The cluster's processes (the head's descendants; workers included)."""
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def actor_processes(self, name: str = "Worker") -> list[psutil.Process]:
        out = []
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                if " ".join(p.cmdline()).startswith(f"ray::{name}"):
                    out.append(p)
        return out


def listening(pids: set[int]) -> list[str]:
    """``address:port`` of every TCP socket listening in one of ``pids`` (``ss -ltnpH``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if any(f"pid={pid}," in line for pid in pids)]


def is_loopback(address: str) -> bool:
    return address.startswith(("127.", "[::ffff:127.", "[::1]"))


@contextlib.contextmanager
def ray_head(cpus: int = 2, startup_s: float = 90.0) -> Iterator[Head]:
    temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: Ray puts unix sockets here
    port = free_port()
    env = {**os.environ, **LOOPBACK_ENV, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    log = temp / "head.log"
    cmd = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
        "--include-dashboard=false", "--disable-usage-stats", f"--num-cpus={cpus}", f"--temp-dir={temp}",
        f"--object-store-memory={200 * 2**20}",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(f"127.0.0.1:{port}", {k: env[k] for k in (*LOOPBACK_ENV, "RAY_AUTH_TOKEN")}, proc, temp)
    try:
        deadline = time.monotonic() + startup_s
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray head did not start: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield head
    finally:
        stop(head)


def stop(head: Head) -> None:
    procs = [*head.processes(), psutil.Process(head.proc.pid)] if head.proc.poll() is None else head.processes()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.proc.pid, signal.SIGKILL)
    for p in procs:  # workers live in sessions of their own: SIGKILL each one the head started
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(procs, timeout=10)
    head.proc.wait(timeout=10)
    shutil.rmtree(head.temp, ignore_errors=True)
