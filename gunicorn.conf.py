"""gunicorn settings lms-scim relies on, read from the working directory by `gunicorn`
(command-line flags, as in `make run`, take precedence).

- Where to listen, how many workers and threads: `HOST`:`PORT`, `WEB_CONCURRENCY`, `WEB_THREADS`,
  read by the app's own `Config.from_env`, so the address gunicorn binds is the `HOST` the app
  decides the `/admin` cookie's `Secure` flag by. The Procfile sets only `HOST` (0.0.0.0 unless
  given): before, it bound 0.0.0.0 while the app believed the default loopback `HOST` and sent
  the cookie without `Secure` to a deployment reached from outside.

- `graceful_timeout`: on SIGTERM a worker stops accepting and finishes the requests it holds
  for up to 30 s before it is killed (a deploy or scale-in loses no acknowledged write).
- Prometheus multiprocess mode: every worker writes its counters to files in
  `PROMETHEUS_MULTIPROC_DIR`, and `/metrics` adds them up, so any worker answers for all.
  When the variable is unset a private directory is made here and removed at exit; when set,
  its old files are removed at start. The variable must be set before a worker imports
  prometheus_client, hence here (in the master, before the fork) and not in the app.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from app.config import Config

_config = Config.from_env()
_host = f"[{_config.host}]" if ":" in _config.host else _config.host

bind = [f"{_host}:{_config.port}"]
workers = _config.web_concurrency
worker_class = "gthread"
threads = _config.web_threads
graceful_timeout = 30

_made: list[str] = []


def on_starting(server: Any) -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="lms-scim-metrics-")
        _made.append(path)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    Path(path).mkdir(parents=True, exist_ok=True)
    for stale in Path(path).glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    for path in _made:
        shutil.rmtree(path, ignore_errors=True)
