"""A throwaway NATS server with JetStream for tests: Debian's `nats-server`
(/usr/sbin/nats-server, or one on PATH) on 127.0.0.1, a free port and a temporary
store folder; stopped and deleted afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from factbridge.errors import FactBridgeError

START_TIMEOUT_S = 10.0


class ServerUnavailable(FactBridgeError):
    """nats-server cannot be started here (the reason says why)."""


def find_nats_server() -> str | None:
    for candidate in ("/usr/sbin/nats-server", shutil.which("nats-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    def __init__(self) -> None:
        self.port = 0
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        binary = find_nats_server()
        if binary is None:
            raise ServerUnavailable("nats-server not found (apt-get install nats-server)")
        self.root = Path(tempfile.mkdtemp(prefix="factbridge-nats-"))
        self.port = _free_port()
        log = self.root / "server.log"
        self._proc = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.root / "store"), "-l", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            # ready when the log says JetStream is up and the port accepts connections
            ready = log.is_file() and "Server is ready" in log.read_text(errors="replace")
            if ready:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        tail = log.read_text(errors="replace")[-2000:] if log.is_file() else "(no log)"
        self.stop()
        raise ServerUnavailable(f"nats-server did not start within {START_TIMEOUT_S:.0f} s on port {self.port}:\n{tail}")

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
            self._proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
