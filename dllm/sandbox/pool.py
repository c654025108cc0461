"""Run untrusted Python programs, each in its own isolated process, many at a time.

```python
with Sandbox(workers=4) as sandbox:
    results = sandbox.run([Job("print(input()[::-1])", stdin="abc"), Job("def f(): return 1", test="assert f() == 1")])
results[0].stdout, results[1].passed   # "cba\\n", True
```

A `Sandbox` keeps `workers` worker processes (one per slot, at most `workers` programs run at
once; default: the CPUs this process may use). Each worker (`worker.py`, started
with a minimal environment) forks one child per program and isolates it as far as the
kernel and our privileges allow: rlimits on CPU time, address space, file size, open files
and processes; the wall-clock limit and the output caps enforced by the worker; a fresh work
directory, emptied afterwards; a minimal environment (PATH, LANG; never this process's
variables); and where available a per-slot uid (as root), a user namespace (otherwise), no
network (a network namespace), a PID namespace (every process the program starts dies with
it), an IPC namespace per job, one memory cgroup per slot (a job's processes share
`memory_mb`) and a read-only root holding only the interpreter, the standard library and the
`allowed_packages`, with a Python audit hook covering what the kernel did not give. If this
process dies, running jobs end within milliseconds and the workers remove their files.
`Sandbox.isolation` reports what this machine gave; see `worker.py` and
docs/code_sandbox.md.

A job with a `test` runs the program, then the test code in the program's namespace; it
passes only when the harness proves that the test's last line ran (see
`harness.py` for what a program cannot fake). A job without a test passes when the
program exits with status 0; its stdout is the caller's to judge.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import importlib.util
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from dllm.errors import DllmError
from dllm.sandbox.worker import receive, send

logger = logging.getLogger(__name__)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")

# The whole environment a program sees (plus HOME and TMPDIR, its work directory). One
# thread per numeric library, so that a program uses one core, as the pool assumes.
MINIMAL_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}

# Imported once per worker, so programs find them at no cost, and find them at all where the
# sandbox user cannot read the Python installation (e.g. an interpreter under /root).
DEFAULT_PRELOAD = (
    "array", "ast", "base64", "bisect", "calendar", "cmath", "collections", "collections.abc", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "encodings.idna", "enum", "fractions",
    "functools", "hashlib", "heapq", "io", "itertools", "json", "math", "numbers", "operator", "pprint", "queue",
    "random", "re", "statistics", "string", "struct", "textwrap", "threading", "time", "typing", "unicodedata",
    "weakref", "zlib",
)  # fmt: skip

UID_LOCKS = os.path.join(tempfile.gettempdir(), "dllm-sandbox-uids")
REPLY_GRACE_S = 10.0  # beyond a job's wall limit, before the worker itself counts as hung


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one): the default number
    of worker processes of the sandbox and of the rewards that check completions side by side."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class SandboxError(DllmError, RuntimeError):
    """The sandbox cannot run programs here (not: a program failed, which is a `Result`)."""


@dataclass(frozen=True)
class Limits:
    """What one program may use. `cpu_seconds` is exact (checked after the run), `wall_seconds`
    includes start-up; `memory_mb` bounds the address space, interpreter included (~30 MB)."""

    cpu_seconds: float = 5.0
    wall_seconds: float = 10.0
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 32
    output_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"sandbox limit {name}={value!r}: must be a positive number")
        if self.memory_mb < 128:
            raise ValueError(
                f"sandbox limit memory_mb={self.memory_mb}: the interpreter alone needs ~30 MB; use >= 128"
            )
        if self.open_files < 16:
            raise ValueError(f"sandbox limit open_files={self.open_files}: the interpreter needs a few; use >= 16")


@dataclass(frozen=True)
class Job:
    """A program; `test`: code run after it in its namespace (pass = proof it ran to the end);
    `stdin`: the program's standard input; `limits`: None for the sandbox's own; `probes`:
    `(expression, send)` pairs evaluated after the program, in its namespace, whose values
    come back as plain data in `Result.report` (see `checks`)."""

    program: str
    test: str | None = None
    stdin: str = ""
    limits: Limits | None = None
    probes: tuple[tuple[str, bool], ...] | None = None


@dataclass(frozen=True)
class Result:
    """How a program ended. `status`: "ok" (exit 0), "error" (nonzero exit, an exception or a
    signal), "timeout" (CPU or wall limit), "output_limit", "memory_limit" (the job's processes
    together went over `Limits.memory_mb`, where a memory cgroup counts them: see
    `Sandbox.isolation["memory"]`), or "sandbox_error" (the sandbox failed, not the program).
    `passed`: the test ran to its end (a job with a test), else status "ok". Output is decoded
    as UTF-8 and cut at `Limits.output_bytes`; `report`: the raw bytes the harness wrote to
    its report channel (fd 4), cut at the same size."""

    status: str
    passed: bool
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    setup: dict = field(default_factory=dict, repr=False)
    report: bytes = field(default=b"", repr=False)


class Sandbox:
    """A pool of sandbox workers. `workers`: programs at once (None: the usable CPUs);
    `uid`: first uid of the per-slot range used when running as root (None: keep root, and
    RLIMIT_NPROC cannot bind); `namespaces`: use Linux namespaces where the kernel allows;
    `preload`: modules every worker imports once; `root`: where work directories go;
    `allowed_packages`: installed top-level packages programs may import, besides the standard
    library (with a mount namespace, nothing else of the Python installation is there)."""

    def __init__(
        self,
        workers: int | None = None,
        limits: Limits | None = None,
        uid: int | None = 61000,
        namespaces: bool = True,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        root: str | None = None,
        allowed_packages: Sequence[str] = ("numpy",),
    ) -> None:
        if not sys.platform.startswith("linux"):
            raise SandboxError(f"the code sandbox needs Linux (namespaces, rlimits, pidfd); this is {sys.platform}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers={workers}: need at least 1 (or None for one per usable CPU)")
        self.workers = workers or usable_cpus()
        self.limits = limits or Limits()
        self._root = tempfile.mkdtemp(prefix="dllm-sandbox-", dir=root)
        os.chmod(self._root, 0o711)  # slot uids must reach their own work directory, and list nothing
        self._config = {
            "uid": uid,
            "namespaces": namespaces,
            "preload": list(preload),
            "root": self._root,
            "env": MINIMAL_ENV,
            "packages": package_paths(allowed_packages),
        }
        self._slots = [_Slot(self._config, index) for index in range(self.workers)]
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        for slot in self._slots:
            self._free.put(slot)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="dllm-sandbox")
        self._lock = threading.Lock()
        self._isolation: dict | None = None
        self._finalizer = weakref.finalize(self, _shut_down, self._slots, self._executor, self._root)

    @property
    def isolation(self) -> dict:
        """Which isolation layers this machine gave (from a first, trivial program)."""
        with self._lock:
            if self._isolation is None:
                self._isolation = self._probe()
        return self._isolation

    def run(self, jobs: Sequence[Job]) -> list[Result]:
        """Run every job, `workers` at a time; one `Result` per job, in order."""
        if not jobs:
            return []
        _ = self.isolation  # the first run probes the machine, and refuses to start where nothing can run
        return list(self._executor.map(self._run_one, jobs))

    def close(self) -> None:
        """Stop the workers and delete the work directories."""
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run_one(self, job: Job) -> Result:
        slot = self._free.get()
        try:
            return slot.run(job, job.limits or self.limits)
        finally:
            self._free.put(slot)

    def _probe(self) -> dict:
        slot = self._free.get()
        try:
            result = slot.run(Job("pass"), self.limits)
            isolation = {**slot.isolation, **result.setup}
        finally:
            self._free.put(slot)
        if result.status != "ok":
            raise SandboxError(
                f"the code sandbox cannot run a trivial program here ({result.status}): "
                f"{result.setup.get('error') or result.stderr.strip() or 'no output'}. "
                f"If the uid switch fails (uid {self._config['uid']}), choose a free uid with uid=..., "
                f"or uid=None to keep the current one; namespaces=False skips the namespaces"
            )
        _log_isolation(isolation)
        return isolation


class _Slot:
    """One worker process, started on first use and restarted after it dies or hangs."""

    def __init__(self, config: dict, index: int) -> None:
        self.config, self.index = config, index
        self.process: subprocess.Popen | None = None
        self.isolation: dict = {}
        self._fds: tuple[int, int] = (-1, -1)
        self._uid: int | None = None
        self._lock_fd: int | None = None

    def run(self, job: Job, limits: Limits) -> Result:
        request = {
            "program": job.program,
            "test": job.test,
            "stdin": job.stdin,
            "probes": job.probes,
            "limits": asdict(limits),
        }
        for attempt in (1, 2):  # a worker that died between jobs is restarted once, before the job runs
            try:
                self._start()
                send(self._fds[0], request)
                break
            except SandboxError as exc:
                return Result("sandbox_error", False, stderr=str(exc), setup={"error": str(exc)})
            except OSError as exc:
                self.stop()
                if attempt == 2:
                    message = f"sandbox worker {self.index} takes no jobs ({exc})"
                    return Result("sandbox_error", False, stderr=message, setup={"error": message})
        try:
            reply = _receive(self._fds[1], limits.wall_seconds + REPLY_GRACE_S)
        except (OSError, TimeoutError, ValueError) as exc:
            self.stop()
            message = f"sandbox worker {self.index} failed ({type(exc).__name__}: {exc}); it will be restarted"
            logger.warning(message)
            return Result("sandbox_error", False, stderr=message, setup={"error": message})
        if reply["status"] == "sandbox_error" and "setup" not in reply:
            return Result("sandbox_error", False, stderr=reply["error"], setup={"error": reply["error"]})
        passed = reply["proof"] if job.test is not None else reply["status"] == "ok"
        return Result(
            reply["status"],
            passed,
            reply["returncode"],
            reply["stdout"],
            reply["stderr"],
            reply["seconds"],
            reply["cpu_seconds"],
            reply["setup"],
            base64.b64decode(reply["report"]),
        )

    def _start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.stop()
        config = dict(self.config)
        if os.geteuid() == 0 and config["uid"] is not None:
            if self._lock_fd is None:  # kept across restarts: the uid stays this slot's
                self._uid, self._lock_fd = _claim_uid(config["uid"] + self.index)
            config["uid"] = self._uid
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        log_path = config["log"] = os.path.join(config["root"], f"worker-{self.index}.log")
        keep = (request_r, reply_w) + (() if self._lock_fd is None else (self._lock_fd,))
        try:
            with open(log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-I", WORKER, str(request_r), str(reply_w)],
                    pass_fds=keep,
                    env=MINIMAL_ENV,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    cwd=config["root"],
                    start_new_session=True,
                )
        finally:
            os.close(request_r)
            os.close(reply_w)
        self._fds = (request_w, reply_r)
        try:
            send(request_w, config)
            hello = _receive(reply_r, 60.0)
        except (OSError, TimeoutError, ValueError) as exc:
            hello = {"error": f"{type(exc).__name__}: {exc}"}
        if "error" in hello:
            self.stop()
            with open(log_path, "rb") as log:
                tail = log.read()[-2000:].decode("utf-8", "replace").strip()
            raise SandboxError(
                f"sandbox worker {self.index} did not start: {hello['error']}" + (f"\n{tail}" * bool(tail))
            )
        self.isolation = hello["isolation"]

    def stop(self) -> None:
        """End the worker: end of input first (it finishes its job and exits), then a kill."""
        for fd in self._fds:
            if fd >= 0:
                os.close(fd)
        self._fds = (-1, -1)
        if self.process is not None:
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                _kill_group(self.process.pid)
                self.process.wait()
            self.process = None

    def release(self) -> None:
        self.stop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _receive(fd: int, timeout: float) -> dict:
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no reply within {timeout:.0f}s")
    message = receive(fd)
    if message is None:
        raise OSError("the worker exited")
    return message


def package_paths(names: Sequence[str]) -> list[str]:
    """Where the installed packages `names` live: each one's directory (or module file), and a
    sibling `<name>.libs` directory of vendored shared libraries where there is one (wheels
    repaired by auditwheel, e.g. numpy's OpenBLAS). A name not installed is left out."""
    paths = []
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"allowed_packages: {name!r} is not a top-level package name (e.g. 'numpy')")
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        found = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
        found = [os.path.realpath(p) for p in found if os.path.exists(p)]
        paths += found
        paths += [libs for p in found if os.path.isdir(libs := os.path.join(os.path.dirname(p), f"{name}.libs"))]
    return sorted(set(paths))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _claim_uid(first: int) -> tuple[int, int]:
    """The first uid from `first` on that no other sandbox on this machine holds, and the
    lock file descriptor that holds it (released when the file is closed)."""
    os.makedirs(UID_LOCKS, mode=0o755, exist_ok=True)
    info = os.stat(UID_LOCKS)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise SandboxError(f"{UID_LOCKS} must be owned by uid {os.geteuid()} and writable by it alone; remove it")
    for uid in range(first, first + 4096):
        fd = os.open(os.path.join(UID_LOCKS, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fd
        except BlockingIOError:
            os.close(fd)
    raise SandboxError(f"no free sandbox uid in {first}..{first + 4095}: too many sandboxes run on this machine")


def _shut_down(slots: list[_Slot], executor: ThreadPoolExecutor, root: str) -> None:
    executor.shutdown(wait=True, cancel_futures=True)
    for slot in slots:
        slot.release()
    shutil.rmtree(root, ignore_errors=True)


def _log_isolation(isolation: dict) -> None:
    layers = ", ".join(f"{name}={value}" for name, value in isolation.items() if not name.endswith("_error"))
    logger.info("code sandbox isolation: %s", layers)
    missing = [
        what
        for what, present in (
            ("uid or user namespace of its own", isolation.get("uid") is not None or isolation.get("userns")),
            ("network namespace", isolation.get("netns")),
            ("PID namespace", isolation.get("pidns")),
            ("read-only mount namespace", isolation.get("readonly")),
        )
        if not present
    ]
    if isolation.get("memory") == "rlimit_as":
        logger.warning(
            "code sandbox: no memory cgroup here (%s); memory_mb bounds each process of a job, not all of them",
            isolation.get("memory_error", "none writable"),
        )
    if missing:
        logger.warning(
            "code sandbox: this machine gives programs no %s (%s); a Python audit hook refuses %s instead, "
            "which a program calling libc directly could get around",
            ", no ".join(missing),
            isolation.get("mount_error", "namespaces need root with CAP_SYS_ADMIN, or unprivileged user namespaces"),
            ", ".join(isolation.get("audit_hook", [])) or "nothing",
        )
