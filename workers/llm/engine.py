"""The worker's side of the vLLM engine: a child process in the vLLM venv, JSON lines between.

``VllmEngine`` starts ``engine_server.py`` with the vLLM venv's python (in its own
process group, with vLLM's engine processes under it), waits for its ready line, and
sends each job as one request line; a reader thread matches replies to callers by id.
Calls from several threads are in flight together and the server adds each to the
running batch, so the worker's job slots share the engine. An engine found dead is
started again, at most once per call; what cannot be served raises ``JobError`` with a
machine-readable reason:

    engine_unavailable   no vLLM python or no model folder (run scripts/provision-vllm)
    engine_load_failed   the server exited or reported an error before it was ready
    engine_load_timeout  not ready within ``load_timeout_s``
    engine_crashed       it died during the call, and again after one restart
    engine_timeout       no answer within ``request_timeout_s`` (the engine is killed)
    model_not_served     the job names another model
    bad_request, context_too_long   answered by the server for one request
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

from masa.errors import JobError
from workers.llm.spec import LlmJobSpec, LlmOutput, engine_request

SERVER_SCRIPT = Path(__file__).with_name("engine_server.py")
LOG_TAIL_BYTES = 2000
STOP_GRACE_S = 10.0


def default_vllm_python() -> Path:
    """``$MASA_VLLM_PYTHON``, else the venv that ``scripts/provision-vllm`` builds."""
    if explicit := os.environ.get("MASA_VLLM_PYTHON"):
        return Path(explicit)
    cache = Path(os.environ.get("MASA_CACHE") or Path.home() / ".cache" / "masa")
    return cache / "vllm-venv" / "bin" / "python"


def vllm_installed(python: Path) -> bool:
    """Whether ``python`` is a venv ``scripts/provision-vllm`` completed (or one named by
    ``$MASA_VLLM_PYTHON``, trusted as is)."""
    if not python.exists():
        return False
    return "MASA_VLLM_PYTHON" in os.environ or (python.parents[1] / ".masa-provisioned").exists()


TINY_MODEL_SCRIPT = Path(__file__).with_name("tiny_model.py")


def build_tiny_model(python: Path, outdir: Path) -> Path:
    """Build the tiny random Llama (tests, ``masa demo``) with the vLLM venv's ``python``."""
    try:
        subprocess.run(
            [str(python), str(TINY_MODEL_SCRIPT), str(outdir)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise JobError(
            "engine_unavailable", f"cannot build the tiny model: {exc} {detail[-500:]!r}"
        ) from exc
    return outdir


class EngineDied(Exception):
    """The server process ended or spoke garbage; pending calls cannot be answered.

    Raised bare by the reader thread; the caller adds the exit code and the log tail.
    """


class _ServerProcess:
    """One running engine server: request lines in, replies matched to them by id."""

    def __init__(self, argv: list[str], env: dict[str, str], log: IO[bytes]) -> None:
        self._log = log
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._dead = False
        self.ready: Future[dict[str, Any]] = Future()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        self._reap_lock = threading.RLock()
        self._reader = threading.Thread(target=self._read, name="vllm-engine-reader", daemon=True)
        self._reader.start()
        threading.Thread(target=self._watch, name="vllm-engine-watch", daemon=True).start()

    def submit(self, request: dict[str, Any]) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            if self._dead:
                raise EngineDied
            request_id = next(self._ids)
            self._pending[request_id] = future
            line = json.dumps({"id": request_id, **request}) + "\n"
            try:
                self._stdin().write(line.encode("utf-8"))
                self._stdin().flush()
            except OSError as exc:
                raise EngineDied from exc
        return future

    def _stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for raw in self.proc.stdout:
                try:
                    self._dispatch(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    break
        self._fail_pending()

    def _watch(self) -> None:
        """When the server exits, kill what it started too.

        vLLM's engine core runs in forked children that hold the server's pipes open, so
        its output does not end when it dies (seen on a GPU: a killed server left requests
        waiting for the timeout). Waiting without reaping keeps the group id from reuse."""
        try:
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            return  # kill() reaped it, after killing the group
        self._kill_group()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            self.ready.set_result(message)
            return
        with self._lock:
            future = self._pending.pop(message["id"])
        future.set_result(message)

    def _fail_pending(self) -> None:
        with self._lock:
            self._dead = True
            pending, self._pending = list(self._pending.values()), {}
            self._close_stdin()
        self.kill()
        for future in [self.ready, *pending]:
            if not future.done():
                future.set_exception(EngineDied())

    def describe_exit(self) -> str:
        code = self.proc.returncode
        state = "still running" if code is None else f"exit code {code}"
        return f"engine server {state}; log tail:\n{log_tail(self._log)}"

    def alive(self) -> bool:
        """False once its output ended (the reader then killed the group)."""
        return not self._dead

    def kill(self) -> None:
        """Kill the server and the engine processes it started (its process group).

        Only this method reaps the server, and it kills the group first, so the group id
        cannot have been reused by then.
        """
        with self._reap_lock:
            self._kill_group()
            self.proc.wait()

    def _kill_group(self) -> None:
        with self._reap_lock:
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Ask politely (end of input), give it a grace period to exit, then kill the rest."""
        with self._lock:
            self._close_stdin()
        self._reader.join(timeout=STOP_GRACE_S)
        self.kill()
        self._reader.join()

    def _close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin().close()


def log_tail(log: IO[bytes], size: int = LOG_TAIL_BYTES) -> str:
    """The end of the server's log, read without moving the writer's offset."""
    end = os.fstat(log.fileno()).st_size
    start = max(0, end - size)
    return os.pread(log.fileno(), end - start, start).decode("utf-8", "replace")


class VllmEngine:
    """A vLLM model served by a child process in its own venv; thread-safe."""

    def __init__(
        self,
        python: Path,
        model_path: Path,
        *,
        served_model: str | None = None,
        max_model_len: int = 2048,
        load_timeout_s: float = 300.0,
        request_timeout_s: float = 120.0,
        log_path: Path | None = None,
        dtype: str = "float32",
        memory_share: float = 0.3,
    ) -> None:
        self.python = python
        self.model_path = model_path
        self.served_model = served_model or model_path.name
        self.max_model_len = max_model_len
        self.load_timeout_s = load_timeout_s
        self.request_timeout_s = request_timeout_s
        self.dtype = dtype
        self.memory_share = memory_share
        self.load_seconds: float | None = None
        self.launches = 0
        self._log = open(log_path, "ab") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
        self._lock = threading.Lock()
        self._server: _ServerProcess | None = None

    def __enter__(self) -> VllmEngine:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the server if it is not running, and wait until the model is loaded."""
        self._running()

    def generate(self, spec: LlmJobSpec) -> LlmOutput:
        return self.generate_many([spec])[0]

    def generate_many(self, specs: Sequence[LlmJobSpec]) -> list[LlmOutput]:
        """Send all at once (they share a batch); the first failure raises JobError."""
        for spec in specs:
            self._check_model(spec)
        try:
            replies = self._call(specs)
        except EngineDied:
            try:
                replies = self._call(specs)
            except EngineDied as exc:
                raise JobError("engine_crashed", f"died again after a restart: {exc}") from exc
        return [to_output(reply) for reply in replies]

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None
        self._log.close()

    @property
    def restarts(self) -> int:
        """How often the server was started again after it died or was killed."""
        return max(0, self.launches - 1)

    def pid(self) -> int | None:
        """The server's process id while it runs (for monitoring and tests)."""
        server = self._server
        return server.proc.pid if server and server.alive() else None

    def _check_model(self, spec: LlmJobSpec) -> None:
        if spec.model != self.served_model:
            raise JobError(
                "model_not_served", f"{spec.model!r}; this engine serves {self.served_model!r}"
            )

    def _call(self, specs: Sequence[LlmJobSpec]) -> list[dict[str, Any]]:
        server = self._running()
        deadline = time.monotonic() + self.request_timeout_s
        try:
            futures = [server.submit(engine_request(spec)) for spec in specs]
            return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
        except TimeoutError as exc:
            self._discard(server)
            raise JobError(
                "engine_timeout",
                f"no answer in {self.request_timeout_s:g} s; the engine was killed",
            ) from exc
        except EngineDied as exc:
            self._discard(server)
            raise EngineDied(server.describe_exit()) from exc

    def _running(self) -> _ServerProcess:
        with self._lock:
            if self._server is None or not self._server.alive():
                self._server = None
                self._server = self._launch()
            return self._server

    def _discard(self, server: _ServerProcess) -> None:
        with self._lock:
            if self._server is server:
                self._server = None
        server.kill()

    def _launch(self) -> _ServerProcess:
        self._check_files()
        started = time.monotonic()
        try:
            server = _ServerProcess(self._argv(), server_env(), self._log)
        except OSError as exc:
            raise JobError("engine_unavailable", f"cannot run {self.python}: {exc}") from exc
        try:
            ready = server.ready.result(timeout=self.load_timeout_s)
        except TimeoutError as exc:
            server.kill()
            raise JobError(
                "engine_load_timeout",
                f"not ready in {self.load_timeout_s:g} s; {server.describe_exit()}",
            ) from exc
        except EngineDied as exc:
            raise JobError("engine_load_failed", server.describe_exit()) from exc
        if not ready.get("ready"):
            server.kill()
            raise JobError("engine_load_failed", str(ready.get("detail", ready)))
        self.load_seconds = round(time.monotonic() - started, 3)
        self.launches += 1
        return server

    def _check_files(self) -> None:
        if not self.python.exists():
            raise JobError(
                "engine_unavailable", f"no vLLM python at {self.python}; run scripts/provision-vllm"
            )
        if not (self.model_path / "config.json").exists():
            raise JobError("engine_unavailable", f"no model folder at {self.model_path}")

    def _argv(self) -> list[str]:
        return [
            str(self.python),
            str(SERVER_SCRIPT),
            "--model",
            str(self.model_path),
            "--max-model-len",
            str(self.max_model_len),
            "--dtype",
            self.dtype,
            "--gpu-memory-utilization",
            str(self.memory_share),
        ]


def server_env() -> dict[str, str]:
    """This environment, less what would point the vLLM venv's python at ours."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {key: value for key, value in os.environ.items() if key not in drop}


def to_output(reply: dict[str, Any]) -> LlmOutput:
    if "error" in reply:
        raise JobError(str(reply["error"]), str(reply.get("detail", "")))
    return LlmOutput(
        text=reply["text"],
        prompt_tokens=reply["prompt_tokens"],
        completion_tokens=reply["completion_tokens"],
        finish_reason=reply.get("finish_reason"),
    )
