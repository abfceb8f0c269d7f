"""A real S3 API on 127.0.0.1 for the remote tests and benchmarks: moto's standalone server in a process of its own
(`python -m moto.server`), on a free port, stopped by its pid. `pause()` / `resume()` (SIGSTOP / SIGCONT) make it a
remote that stops answering and comes back with its data; `stop()` / `start()` one that goes away and comes back empty
(moto keeps its state in memory) on the same port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

KEY = "rldk-test-key"
SECRET = "rldk-test-secret-do-not-show"
"""Credentials of the test server: tests check that the secret is never shown."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def storage_options(self, timeout: float = 1.0) -> dict[str, Any]:
        """s3fs options for this server: credentials, endpoint, and short timeouts with one attempt (a test's remote
        that goes away must fail in about a second, not after botocore's retries)."""
        return {
            "key": KEY,
            "secret": SECRET,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "eu-west-1"},
            "config_kwargs": {
                "connect_timeout": timeout, "read_timeout": timeout, "retries": {"max_attempts": 1, "mode": "standard"},
            },
        }

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "1"}
        for attempt in range(50):  # the port of a server just stopped may take a moment to be free again
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).read()
                    self.paused = False
                    return
                except OSError:
                    time.sleep(0.05)
            if self.process.poll() is None:
                self.stop()
                raise RuntimeError(f"moto server did not answer on {self.endpoint} within {timeout} s")
            time.sleep(0.1)
        raise RuntimeError(f"moto server could not start on port {self.port}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self.paused:
            os.kill(process.pid, signal.SIGCONT)
            self.paused = False
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def make_bucket(self, name: str) -> None:
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options())
        fs.mkdir(name)


def moto_available() -> bool:
    try:
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError:
        return False
    return True
