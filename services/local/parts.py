"""The local stack's services, one part at a time: how each is launched (``up`` uses this), and what can be done to
one while the stack runs (the fault tests and ``streamwreck local restart``): kill it (SIGKILL to its whole process
group: the KCL daemon's record processors die with it), pause and resume it (SIGSTOP/SIGCONT: a server that accepts
connections and never answers), start it again with the same settings on the same port, and start another
processor worker (a second KCL worker of the same application, with its own worker id).

Every change is written to ``stack.json`` at once, so ``down`` stops exactly what runs. moto and kinesis-local keep
their state in memory: a restart would lose the stream, the topic, the queues and the lease table, so they can be
paused but not restarted. memcached can: it comes back empty, which is the fault the ledger must own up to.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Mapping
from pathlib import Path

import psutil

from streamwreck.core.clock import wait_until
from streamwreck.core.commands import streamwreck_argv
from streamwreck.core.errors import StartError, WaitTimeout
from streamwreck.core.settings import LocalSettings, environment, load_settings
from streamwreck.local import processes
from streamwreck.local.processes import HOST, Service
from streamwreck.local.state import WATCH, Part, Say, StackState, locked, save, status
from streamwreck.processor.jars import find_jars

PROCESSOR = "processor"
# What `restart` can start again; the emulators keep their state in memory and cannot (pause them instead).
RESTARTABLE = ("memcached", "recorder", "api", PROCESSOR, WATCH)
IN_MEMORY = ("moto", "kinesis-local")
KILL_WAIT = 10.0  # seconds for a SIGKILLed group to be gone

_state_lock = threading.Lock()  # the emulators start in threads, each recording itself


def clean_env_argv(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """Prefix ``argv`` with env(1) unsetting every inherited AWS_*/STREAMWRECK_* variable that ``env`` does not set:
    the stack's services must not pick up the caller's profile, session token, API key or endpoints."""
    inherited = environment()
    unset = [name for name in sorted(inherited) if name.startswith(("AWS_", "STREAMWRECK_")) and name not in env]
    if not unset:
        return argv
    return ["env", *[arg for name in unset for arg in ("-u", name)], *argv]


def services_env(state: StackState, jars: Path) -> dict[str, str]:
    """The environment of the processor, the recorder and the API; the stack's ``service_env`` last (it wins)."""
    return {
        **state.aws_environment(),
        "STREAMWRECK_MEMCACHED_SERVERS": state.memcached,
        "STREAMWRECK_QUEUE_URL": state.queue_url,
        "STREAMWRECK_TOPIC_ARN": state.topic_arn,
        "STREAMWRECK_STREAM_NAME": state.stream,
        "STREAMWRECK_APPLICATION_NAME": state.kcl_application,
        "STREAMWRECK_REGION": state.region,
        "STREAMWRECK_SKIP_EVERY": str(state.skip_every),
        "STREAMWRECK_INITIAL_POSITION": "TRIM_HORIZON",
        "STREAMWRECK_RETRIEVAL_MODE": "POLLING",
        "STREAMWRECK_METRICS_LEVEL": "NONE",
        "STREAMWRECK_KCL_JARS_DIR": str(jars),
        "STREAMWRECK_RECORDER_WAIT_SECONDS": "2",  # a short long poll: down need not wait for it
        "STREAMWRECK_WORKER_ID": "local",
        "STREAMWRECK_LOCAL_PROFILE": "true",  # the KCL's emulator profile: no worker metrics, fast lease sync
        "PYTHONUNBUFFERED": "1",
        **state.service_env,
    }


def watch_env(state: StackState, jars: Path) -> dict[str, str]:
    """The watcher's environment: the stack's emulators, the KCL's emulator profile, its metrics on 127.0.0.1 only,
    and the stack's ``service_env`` last. Not the consumer's settings (the watcher is an application of its own)."""
    return {
        **state.aws_environment(),
        "STREAMWRECK_REGION": state.region,
        "STREAMWRECK_KCL_JARS_DIR": str(jars),
        "STREAMWRECK_LOCAL_PROFILE": "true",
        "STREAMWRECK_INITIAL_POSITION": "TRIM_HORIZON",
        "STREAMWRECK_METRICS_HOST": HOST,
        "STREAMWRECK_CHECKPOINT_SECONDS": "2",  # `local wait` waits for the watcher's checkpoints
        "STREAMWRECK_WORKER_ID": "local",
        "PYTHONUNBUFFERED": "1",
        **state.service_env,
    }


def watch_argv(state: StackState, port: int) -> list[str]:
    """``streamwreck watch`` on the stack's stream, auditing its consumer, lost records appended to ``lost.jsonl``."""
    return [
        *streamwreck_argv("watch"),
        "--quiet",
        "--stream", state.stream,
        "--kcl-app", state.kcl_application,
        "--application", state.watch_application,
        "--endpoint", state.api_url,
        "--metrics-port", str(port),
        "--export", str(state.lost_file),
    ]  # fmt: skip


def recorder_for(
    state: StackState, url: str | None = None, replacing: Part | None = None, metrics_url: str | None = None
) -> processes.OnStarted:
    """An ``on_started`` that writes a spawned process to the state file (before it answers: whatever happens
    next, down finds it), in the place of ``replacing`` if given."""

    def record(service: Service) -> None:
        where = url or (f"{HOST}:{service.port}" if service.name == "memcached" else service.url)
        part = Part(service.name, service.pid, service.started, str(service.log_path), where, metrics_url)
        with _state_lock:
            if replacing is not None and replacing in state.parts:
                state.parts[state.parts.index(replacing)] = part
            else:
                state.parts.append(part)
            save(state)

    return record


def _metrics_env(service: str, port: int) -> dict[str, str]:
    """The recorder's or the processor's Prometheus metrics on ``port`` of 127.0.0.1."""
    return {f"STREAMWRECK_{service}_METRICS_PORT": str(port), f"STREAMWRECK_{service}_METRICS_HOST": HOST}


def is_processor(name: str) -> bool:
    """The first processor worker is ``processor``; more are ``processor-2``, ``processor-3``, ..."""
    return name == PROCESSOR or name.startswith(f"{PROCESSOR}-")


def worker_id(name: str) -> str:
    return "local" if name == PROCESSOR else f"local-{name.removeprefix(f'{PROCESSOR}-')}"


def start_service(
    state: StackState,
    name: str,
    env: Mapping[str, str],
    *,
    port: int = 0,
    replacing: Part | None = None,
) -> Service:
    """Launch the processor (or another worker of it), the recorder or the API with ``env``; each is recorded in the
    state file as soon as it is spawned. The processor is not waited for (its leases take 30-60 s; callers wait on
    them), the recorder until it logs that it started, the API until /readyz answers 200, the watcher until its
    /healthz answers (it asks the API first: start it after the API)."""
    logs = state.logs
    if is_processor(name):
        metrics = processes.free_port()
        env = {**env, "STREAMWRECK_WORKER_ID": worker_id(name), **_metrics_env("PROCESSOR", metrics)}
        application = f"KCL application {state.kcl_application}, worker {worker_id(name)}"
        argv = clean_env_argv(streamwreck_argv("processor"), env)
        started = recorder_for(state, application, replacing, f"http://{HOST}:{metrics}/metrics")
        return processes.launch(name, argv, logs, 0, lambda: True, env=env, on_started=started)
    if name == "recorder":
        metrics = processes.free_port()
        env = {**env, **_metrics_env("RECORDER", metrics)}
        return processes.launch(
            name,
            clean_env_argv(streamwreck_argv("recorder"), env),
            logs,
            0,
            processes.log_marker(logs / "recorder.log", "recorder_started"),
            env=env,
            timeout=60,
            on_started=recorder_for(state, state.queue_url, replacing, f"http://{HOST}:{metrics}/metrics"),
        )
    if name == "api":
        port = port or processes.free_port()
        api_env = {**env, "STREAMWRECK_API_HOST": HOST, "STREAMWRECK_API_PORT": str(port)}
        return processes.launch(
            name,
            clean_env_argv(streamwreck_argv("api"), api_env),
            logs,
            port,
            lambda: processes.http_ready(f"http://{HOST}:{port}/readyz", ok_only=True),
            env=api_env,
            timeout=60,
            on_started=recorder_for(state, replacing=replacing, metrics_url=f"http://{HOST}:{port}/metrics"),
        )
    if name == WATCH:
        port = port or processes.free_port()
        url = f"http://{HOST}:{port}"
        return processes.launch(
            name,
            clean_env_argv(watch_argv(state, port), env),
            logs,
            port,
            lambda: processes.http_ready(f"{url}/healthz"),
            env=env,
            timeout=60,
            on_started=recorder_for(state, url, replacing, f"{url}/metrics"),
        )
    raise StartError(f"no service named {name!r}")


# --- faults: kill, pause, resume, restart, another worker ------------------------------------------------------


def _part(state: StackState, name: str) -> Part:
    part = state.part(name)
    if part is None:
        known = ", ".join(p.name for p in state.parts)
        raise StartError(f"the stack in {state.dir} has no part {name!r} (it has {known})")
    return part


def _signal_group(part: Part, sig: signal.Signals) -> list[int]:
    """Send ``sig`` to every live process of the part's group; their pids."""
    members = part.members()
    for process in members:
        with contextlib.suppress(psutil.Error):  # psutil checks the pid was not reused meanwhile
            process.send_signal(sig)
    return [process.pid for process in members]


def kill(directory: Path, name: str) -> list[int]:
    """SIGKILL every process of the part's group (no clean-up of any kind: a crash); returns once they are gone.
    The part stays in the state file, dead, until it is restarted (``down`` tidies it up either way)."""
    part = _part(status(directory), name)
    pids = _signal_group(part, signal.SIGKILL)
    try:
        wait_until(lambda: not part.members(), KILL_WAIT, f"{name} to die", interval=0.05)
    except WaitTimeout:
        raise StartError(f"{name} survived SIGKILL: {[p.pid for p in part.members()]}") from None
    return pids


def pause(directory: Path, name: str) -> list[int]:
    """SIGSTOP the part's group: its sockets stay open, and nothing answers (a server unreachable for a while)."""
    return _signal_group(_part(status(directory), name), signal.SIGSTOP)


def resume(directory: Path, name: str) -> list[int]:
    """SIGCONT the part's group (after :func:`pause`)."""
    return _signal_group(_part(status(directory), name), signal.SIGCONT)


def restart(directory: Path, name: str, say: Say = print, *, settings: LocalSettings | None = None) -> Part:
    """Start the part again with the settings and port it had (stopping it first if it still runs: gracefully, as
    ``down`` would); returns its new entry. moto and kinesis-local cannot be restarted: they would come back empty."""
    directory = directory.resolve()
    if name in IN_MEMORY:
        raise StartError(f"{name} keeps the stream, queues and leases in memory and cannot be restarted: pause it")
    with locked(directory, "restart", say):
        state = status(directory)
        old = _part(state, name) if not is_processor(name) else state.part(name)
        if old is not None and old.members():
            old.stop(3.0)
            say(f"stopped {name} (pid {old.pid})")
        if name == "memcached":
            assert old is not None
            port = int(state.memcached.rsplit(":", 1)[1])
            service = processes.start_memcached(state.logs, port, on_started=recorder_for(state, replacing=old))
        else:
            settings = settings or load_settings(LocalSettings)
            jars = find_jars(settings.kcl_jars_dir)
            env = watch_env(state, jars) if name == WATCH else services_env(state, jars)
            url = state.api_url if name == "api" else state.watch_url if name == WATCH else None
            port = int(url.rsplit(":", 1)[1]) if url else 0
            service = start_service(state, name, env, port=port, replacing=old)
        say(f"started {name} again (pid {service.pid})")
        return _part(state, name)


def add_worker(directory: Path, say: Say = print, *, settings: LocalSettings | None = None) -> Part:
    """Start another processor worker (``processor-N``, KCL worker id ``local-N``) of the stack's application: the
    KCL shares the leases between the workers. Not waited for; the lease table shows when it holds leases."""
    directory = directory.resolve()
    with locked(directory, "add-worker", say):
        state = status(directory)
        taken = {part.name for part in state.parts}
        name = next(f"{PROCESSOR}-{n}" for n in range(2, 1000) if f"{PROCESSOR}-{n}" not in taken)
        settings = settings or load_settings(LocalSettings)
        service = start_service(state, name, services_env(state, find_jars(settings.kcl_jars_dir)))
        say(f"started {name} (pid {service.pid}, KCL worker {worker_id(name)})")
        return _part(state, name)
