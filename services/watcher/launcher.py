"""``streamwreck watch``'s long-lived process: it runs the KCL MultiLangDaemon with the watcher's record processor
(the processor's launcher, :mod:`streamwreck.processor.daemon`, reused: the same properties, jars, Java, signal
handling) and, beside it, the metrics server (``/metrics``, ``/healthz``) over the record processors' merged
metrics (:mod:`streamwreck.watcher.metrics`); the command line adds its terminal table on the same merge.

Before Java starts it checks what it can: the stream exists, and the audited consumer's lease table, if it has
leases, is that stream's consumer's (the same check as ``check --kcl-app``). A table that does not exist yet, or is
empty, is only a warning: the consumer may be starting beside the watcher, and until its leases say where it is,
records wait for the grace period.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path

from streamwreck.checker import leases
from streamwreck.checker.reading import list_shards
from streamwreck.core.aws import error_code
from streamwreck.core.errors import AwsError, ConfigError
from streamwreck.core.multiprocess_metrics import MULTIPROC_VARIABLE
from streamwreck.core.settings import WatcherSettings, variable
from streamwreck.processor.daemon import DaemonPlan, daemon_argv, kcl_plan, run_daemon
from streamwreck.processor.jars import find_jars, find_java
from streamwreck.processor.properties import logback_xml, render
from streamwreck.watcher import record_processor
from streamwreck.watcher.metrics import Merged, MetricsServer, Snapshot

logger = logging.getLogger(__name__)


def plan_watch(
    settings: WatcherSettings,
    env: Mapping[str, str],
    extra: Mapping[str, str],
    metrics_dir: Path,
    python: str = sys.executable,
) -> DaemonPlan:
    """The daemon's properties, and the environment each record processor gets (its settings, the metrics folder)."""
    if settings.application_name == settings.kcl_app:
        raise ConfigError("the watcher needs its own KCL application: --application must differ from --kcl-app")
    kcl = kcl_plan(settings, record_processor.__name__, env, extra, python)
    properties = kcl.properties
    update = {"region": kcl.region, "worker_id": kcl.worker_id, "metrics_dir": str(metrics_dir)}
    resolved = settings.model_copy(update=update)
    child_env = {variable(name): str(value) for name, value in resolved.model_dump().items() if value is not None}
    child_env[MULTIPROC_VARIABLE] = str(metrics_dir)
    if settings.local_profile:
        child_env["AWS_EC2_METADATA_DISABLED"] = "true"
    return DaemonPlan(properties=properties, env=child_env)


def preflight(settings: WatcherSettings) -> None:
    """The API answers (as ``check`` asks once before reading: an unreachable API fails now); the stream exists; the
    consumer's lease table, if it has leases, is this stream's consumer's."""
    from streamwreck.checker.reconciling import ReconcileApi
    from streamwreck.core.aws import dynamodb_client, kinesis_client

    api = ReconcileApi(settings.api_url, settings.api_key, max_connections=1)
    try:
        api.reconcile(settings.stream_name, [])
    finally:
        api.close()
    kinesis = kinesis_client()
    shards = list_shards(kinesis, settings.stream_name)
    try:
        items = leases.read_leases(dynamodb_client(), settings.kcl_app)
    except AwsError as exc:
        if error_code(exc.__cause__ or exc) != "ResourceNotFoundException":
            raise
        items = []
    if not items:
        logger.warning("consumer_leases_missing", extra={"table": settings.kcl_app, "stream": settings.stream_name})
        return
    created = (
        leases.creation_epoch(kinesis, settings.stream_name)
        if leases.multi_stream(items, settings.stream_name)
        else None
    )
    leases.verified_checkpoints(items, settings.stream_name, shards, settings.kcl_app, created)


class Watcher:
    """The daemon with the watcher's record processor, and the metrics server; ``run`` blocks until it exits."""

    def __init__(self, settings: WatcherSettings, extra: Mapping[str, str], env: Mapping[str, str]) -> None:
        self.settings = settings
        self.extra = dict(extra)
        self.env = dict(env)
        self._folder = Path(tempfile.mkdtemp(prefix="streamwreck-watch-"))
        self.metrics_dir = self._folder / "metrics"
        self.metrics_dir.mkdir()
        self.merged = Merged(self.metrics_dir)
        self.plan = plan_watch(settings, self.env, self.extra, self.metrics_dir)
        self.server: MetricsServer | None = None

    def close(self) -> None:
        """Remove the temporary folder (``run`` does it itself)."""
        shutil.rmtree(self._folder, ignore_errors=True)

    def properties_text(self) -> str:
        return render(self.plan.properties)

    @property
    def metrics_url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def snapshot(self) -> Snapshot:
        return self.merged.snapshot()

    def run(self, output: int | None = None, on_started: Callable[[Watcher], None] | None = None) -> int:
        """Run the daemon in the foreground (its output on ``output``, a file descriptor, else stderr)."""
        s = self.settings
        jars = find_jars(s.kcl_jars_dir)
        java = find_java(self.env.get("JAVA_HOME"))
        with ExitStack() as stack:
            stack.callback(self.close)
            if s.metrics_port:
                try:
                    self.server = MetricsServer(s.metrics_host, s.metrics_port, self.merged, s.stale_seconds).start()
                except OSError as exc:
                    raise ConfigError(f"cannot serve metrics on port {s.metrics_port}: {exc.strerror or exc}") from None
                stack.callback(self.server.stop)
            properties_file = self._folder / "watch.properties"
            properties_file.write_text(self.properties_text(), encoding="ascii")
            log_configuration = self._folder / "logback.xml"
            log_configuration.write_text(logback_xml(s.log_level), encoding="utf-8")
            logger.info(
                "watcher_starting",
                extra={
                    "stream": s.stream_name,
                    "application": s.application_name,
                    "consumer": s.kcl_app,
                    "worker_id": self.plan.properties["workerId"],
                    "metrics_url": self.metrics_url,
                },
            )
            if on_started is not None:
                threading.Thread(target=on_started, args=(self,), name="watch-display", daemon=True).start()
            argv = daemon_argv(java, jars, properties_file, log_configuration)
            return run_daemon(argv, {**self.env, **self.plan.env}, output=output)
