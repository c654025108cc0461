"""The sandbox worker: `dllm.sandbox.pool` runs this file, one process per worker slot.

It is run by path with `python -I` (stdlib only, never `dllm` or torch). It forks one child
per job from its own small, initialised interpreter, so a program costs a fork (a few
milliseconds) instead of an interpreter start, and the `preload` modules are there even when
the sandbox user cannot read the Python installation. The worker is the trusted supervisor:
it sets up the child's isolation, enforces the wall-clock limit, collects the output and
clears the work directory. Nothing it holds is secret: it starts with a minimal
environment and never sees a test's expected output.

Protocol over two pipes whose fds are argv[1] (requests) and argv[2] (replies): each message
is a 4-byte big-endian length and a JSON object. First request: the worker config (`uid`,
`namespaces`, `preload`, `root`, `env`, `packages`, `log`); first reply: `{"isolation": {...}}`
or `{"error": str}`. Then per job: request `{"program", "test", "stdin", "probes", "limits"}`
(the whole dict reaches the harness), reply `{"status", "returncode", "stdout", "stderr",
"proof", "report", "seconds", "cpu_seconds", "setup"}`; `report`: base64 of what the child
wrote to its report channel (fd 4), drained while it runs and capped like stdout; `proof`:
that report is the job's nonce (a test ran to its end).

Isolation layers, each used where the kernel and our privileges allow it (`isolation` and
each reply's `setup` say which were; the kernel calls are in `isolation.py`; the
table with the fallbacks is in docs/code_sandbox.md):
- every child: its own session, rlimits (CPU, address space, file size, open files,
  processes, no core), a minimal environment, a fresh work directory as cwd, HOME and TMPDIR;
- as root: the child runs as this slot's own uid, so RLIMIT_NPROC binds (the kernel never
  applies it to root), it cannot signal our processes, and cannot write what that uid cannot;
- not root: a user namespace (so that the namespaces below need no privileges);
- a network namespace with no interface but a down loopback (made once, at start);
- a PID namespace whose init is the worker: after each job it kills every other process in
  it, however the program's processes tried to escape (and none of them can signal the
  worker); without one, the worker is a subreaper and kills what it inherits;
- a private mount namespace, set up once per worker, whose root is a new read-only tmpfs
  holding only the interpreter, the standard library, the shared libraries, the allowed
  packages, a few /dev nodes, a /proc of the PID namespace and the work directory
  (`isolation.new_root`); per job, a fresh size-limited tmpfs as the work directory
  and another on /dev/shm, unmounted when the job ends;
- an IPC namespace per job (System V objects die with it);
- a memory cgroup per slot (v2, else v1), made once; every job's processes join it, so the
  job's memory limit covers all of them, and an OOM kill in it ends the job as "memory_limit";
  without one, the address-space rlimit bounds each process alone;
- the parent's death (end of file on the request pipe, watched while a job runs) kills the
  job at once; the outer process of the worker, still in the host's mount namespace, then
  removes the slot's directories, log and cgroup.
Where a layer is missing, an audit hook in the child covers the gap as far as Python can
(`harness._audit_hook`): internet sockets, signals to other processes, writes
outside the work directory, reads outside it and the libraries, other processes' /proc
entries, and with them new programs and ctypes calls, which would bypass the hook.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import gc
import importlib.util
import json
import math
import os
import resource
import secrets
import selectors
import shutil
import signal
import struct
import sys
import tempfile
import time

SETUP_ERROR = 126  # the child's exit code when its isolation could not be set up

# The child's file descriptors: 0-2 standard streams, then the nonce to prove a test ran
# with (read), the report channel (write: the proof, or whatever the harness returns) and
# the setup report (write).
SETUP_FD = 5

# --- messages ---------------------------------------------------------------------------


def send(fd: int, message: dict) -> None:
    data = json.dumps(message).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def receive(fd: int) -> dict | None:
    """The next message, or None at end of file (the parent closed the pipe or died)."""
    header = _read_exact(fd, 4)
    if header is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", header)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd: int, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        chunk = os.read(fd, min(n - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


# --- the worker --------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    request_fd, reply_fd = int(argv[1]), int(argv[2])
    config = receive(request_fd)
    if config is None:
        return 1
    try:
        harness = _sibling("harness")
        isolation = _isolate_worker(config, (request_fd, reply_fd))
        for name in config["preload"]:
            with contextlib.suppress(Exception):  # a module this installation lacks: only its users fail
                __import__(name)
        harness.prepare()
        gc.freeze()  # what is here now is never collected: a child's collection scans only its own objects
    except Exception as exc:
        send(reply_fd, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    send(reply_fd, {"isolation": isolation})
    while (job := receive(request_fd)) is not None:
        try:
            reply = run_job(job, config, isolation, harness, request_fd)
        except Exception as exc:  # e.g. fork refused: this job fails, the worker carries on
            reply = {"status": "sandbox_error", "error": f"{type(exc).__name__}: {exc}"}
        if reply.get("status") == "parent_gone":
            return 0
        try:
            send(reply_fd, reply)
        except BrokenPipeError:  # the parent died
            return 0
    return 0


def _sibling(name: str):
    """A module beside this file, loaded by path: run with -I, this file's directory is not on
    sys.path (and must not be, or programs could import our files)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_dllm_sandbox_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


iso = _sibling("isolation")


def _isolate_worker(config: dict, protocol_fds: tuple[int, int]) -> dict:
    """Set up what every job shares; say which isolation layers are available. The rest of
    the worker's life runs in a fork (with a PID namespace, its init: a process cannot enter
    a PID namespace itself, only its children do); the outer process stays in the host's
    mount namespace, waits for it and then removes the slot's files and memory cgroup."""
    sys.dont_write_bytecode = True
    root = os.geteuid() == 0
    isolation = {"uid": config["uid"] if root else None, "userns": False, "netns": False, "pidns": False}
    if config["namespaces"]:
        if not root:  # first: it writes /proc/self files, which turn root's once we are not dumpable
            isolation["userns"] = iso.attempt(iso.enter_user_namespace)
        isolation["netns"] = iso.attempt(lambda: iso.unshare(iso.CLONE_NEWNET))
        isolation["pidns"] = iso.attempt(lambda: iso.unshare(iso.CLONE_NEWPID))
    try:
        config["memory_group"] = iso.MemoryGroup(f"dllm-sandbox-{os.getpid()}")
        isolation["memory"] = f"cgroup{config['memory_group'].version}"
    except OSError as exc:
        isolation["memory"] = "rlimit_as"  # per process only: see docs/code_sandbox.md
        isolation["memory_error"] = str(exc)
    if config["namespaces"]:  # made here, so that the outer process knows what to remove
        config["workdir"] = tempfile.mkdtemp(prefix="work-", dir=config["root"])
        config["newroot"] = tempfile.mkdtemp(prefix="root-", dir=config["root"])
    iso.prctl(iso.PR_SET_DUMPABLE, 0)  # no same-uid process may ptrace us or read our memory
    parent = os.getppid()
    worker = os.fork()
    if worker != 0:  # the outer process: the parent's handle on the worker
        for fd in protocol_fds:
            os.close(fd)
        code = os.waitstatus_to_exitcode(os.waitpid(worker, 0)[1]) & 0xFF
        _remove_slot_files(config, parent_gone=os.getppid() != parent)
        os._exit(code)
    iso.prctl(iso.PR_SET_PDEATHSIG, signal.SIGKILL)  # killing the outer process ends the worker
    if not isolation["pidns"]:
        iso.prctl(iso.PR_SET_CHILD_SUBREAPER, 1)  # processes that escape the job's session become ours to kill
    isolation.update(mountns=False, readonly=False)
    if config["namespaces"]:
        if isolation["uid"] is None:  # counted before a private /proc hides the user's other processes
            config["user_tasks"] = iso.tasks_of(os.getuid())
        try:
            iso.new_root(config, isolation["pidns"])
            isolation["mountns"] = isolation["readonly"] = True
        except OSError as exc:
            isolation["mount_error"] = str(exc)
    if not isolation["mountns"]:  # what the audit hook lets a program read instead
        config["readable"] = iso.needed_paths(config["packages"])
    return isolation


def _remove_slot_files(config: dict, parent_gone: bool) -> None:
    """In the outer process, once the worker is gone: its memory cgroup, its directories
    and, when the parent died without cleaning up, its log and the sandbox root if empty."""
    group = config.get("memory_group")
    deadline = time.monotonic() + 2.0
    while group is not None and os.path.isdir(group.path) and time.monotonic() < deadline:
        group.remove()  # refused while the killed processes of the last job are still exiting
        time.sleep(0.005)
    for key in ("workdir", "newroot"):
        if key in config:
            shutil.rmtree(config[key], ignore_errors=True)
    if parent_gone:
        with contextlib.suppress(OSError):
            os.unlink(config["log"])
        with contextlib.suppress(OSError):
            os.rmdir(config["root"])  # the last slot to go removes it


def run_job(job: dict, config: dict, isolation: dict, harness, request_fd: int) -> dict:
    """Run one program in a fresh isolated child and report how it ended. `request_fd`:
    watched while the job runs; its end of file means that the parent died."""
    limits = job["limits"]
    uid = isolation["uid"]
    group = config.get("memory_group")
    stdin = os.memfd_create("stdin")
    pipes = {name: os.pipe() for name in ("out", "err", "nonce", "report", "setup")}
    workdir = config["workdir"] if isolation["mountns"] else tempfile.mkdtemp(prefix="job-", dir=config["root"])
    try:
        if isolation["mountns"]:
            iso.mount_job_directories(workdir, limits["file_size_mb"], uid)
        elif uid is not None:
            os.chown(workdir, uid, uid)
        if group is not None:
            group.set_limit(limits["memory_mb"] << 20)
            oom_kills = group.oom_kills()
        os.write(stdin, job["stdin"].encode())
        os.lseek(stdin, 0, os.SEEK_SET)
        if job["test"] is not None:
            harness.compile_test(job["test"])  # cached here, so that the children inherit it compiled
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            child_fds = (stdin, pipes["out"][1], pipes["err"][1], pipes["nonce"][0], pipes["report"][1])
            _child(job, config, isolation, harness, workdir, child_fds + (pipes["setup"][1],))
        for end in ("out", "err", "report", "setup"):
            os.close(pipes[end][1])
        os.close(pipes["nonce"][0])
        nonce = secrets.token_hex(16).encode()
        with contextlib.suppress(OSError):  # the child may be gone already
            os.write(pipes["nonce"][1], nonce)
        os.close(pipes["nonce"][1])
        streams = {"out": pipes["out"][0], "err": pipes["err"][0], "report": pipes["report"][0]}
        report = _supervise(pid, streams, request_fd, limits, started)
        _clean_up(pid, isolation, report)
        _drain(report, streams, limits["output_bytes"])
        if group is not None and report["status"] is None and group.oom_kills() > oom_kills:
            report["status"] = "memory_limit"  # the kernel killed a process of the job: over its budget
        setup = _read_nonblocking(pipes["setup"][0], 1 << 16)
        setup = json.loads(setup) if setup else {"error": "the child ended before reporting its setup"}
        return _reply(report, bytes(report["report"]) == nonce, setup, limits)
    finally:
        for fd in [stdin, pipes["out"][0], pipes["err"][0], pipes["report"][0], pipes["setup"][0]]:
            with contextlib.suppress(OSError):
                os.close(fd)
        if isolation["mountns"]:  # every process of the job is gone: detach its file systems
            iso.unmount_job_directories(workdir)
        else:
            shutil.rmtree(workdir, onerror=_force_remove)


def _supervise(pid: int, streams: dict[str, int], request_fd: int, limits: dict, started: float) -> dict:
    """Collect the child's output streams (`streams`: name -> fd) until it exits, runs out of
    wall time, writes too much, or the parent dies (`request_fd` readable: end of file)."""
    report = {name: bytearray() for name in streams} | {"status": None, "wait": None}
    names = {fd: name for name, fd in streams.items()}
    selector = selectors.DefaultSelector()
    for fd in streams.values():
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    selector.register(request_fd, selectors.EVENT_READ)  # the parent sends nothing until our reply
    try:
        pidfd = os.pidfd_open(pid)
        selector.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):  # kernels before 5.3: poll for the exit instead
        pidfd = None
    deadline = started + limits["wall_seconds"]
    try:
        while report["wait"] is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                report["status"] = "timeout"
                break
            for key, _ in selector.select(remaining if pidfd is not None else min(remaining, 0.005)):
                if key.fd == request_fd:
                    report["status"] = "parent_gone"
                elif key.fd in names:
                    buffer = report[names[key.fd]]
                    chunk = _read_chunk(key.fd)
                    if chunk == b"":
                        selector.unregister(key.fd)
                    buffer += chunk or b""
                    if len(buffer) > limits["output_bytes"]:
                        report["status"] = "output_limit"
            if report["status"] is not None:
                break
            waited = os.wait4(pid, os.WNOHANG)
            if waited[0] == pid:
                report["wait"] = waited
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
    report["seconds"] = time.monotonic() - started
    return report


def _clean_up(pid: int, isolation: dict, report: dict) -> None:
    """Kill the child if it still runs, and every process it started; reap them."""
    for kill in (os.kill, os.killpg):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
    if report["wait"] is None:
        report["wait"] = os.wait4(pid, 0)
    if isolation["pidns"]:
        # We are this namespace's init: -1 is every other process in it, wherever it went,
        # and they all end up as our children to reap.
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while True:
                os.wait4(-1, 0)
    else:
        if isolation["uid"] is not None:
            _kill_all_of(isolation["uid"])  # processes that left the session: the slot's uid owns only them
        _kill_children()


def _kill_children() -> None:
    """Kill and reap every process left under this worker: as a subreaper it inherits the
    job's orphans, and it has no children of its own between jobs."""
    me = os.getpid()
    while children := [pid for pid in _pids() if _parent_of(pid) == me]:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _kill_all_of(uid: int) -> None:
    sweeper = os.fork()
    if sweeper == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except the caller
        finally:
            os._exit(0)
    os.waitpid(sweeper, 0)


def _drain(report: dict, streams: dict[str, int], cap: int) -> None:
    """Read what is left in the pipes (briefly: a process that escaped may hold them open)."""
    deadline = time.monotonic() + 0.5
    for name, fd in streams.items():
        buffer = report[name]
        while len(buffer) <= cap and time.monotonic() < deadline:
            chunk = _read_chunk(fd)
            if chunk == b"":
                break
            if chunk is None:
                time.sleep(0.001)
                continue
            buffer += chunk
        if len(buffer) > cap and report["status"] is None:
            report["status"] = "output_limit"


def _read_chunk(fd: int) -> bytes | None:
    """Up to 64 KiB; b"" at end of file; None when nothing is there yet."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None


def _read_nonblocking(fd: int, n: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, n)
    except BlockingIOError:
        return b""


def _reply(report: dict, proof: bool, setup: dict, limits: dict) -> dict:
    _, wait_status, usage = report["wait"]
    returncode = os.waitstatus_to_exitcode(wait_status)
    cpu = usage.ru_utime + usage.ru_stime
    status = report["status"]
    if status is None:
        if "error" in setup:
            status = "sandbox_error"
        elif returncode == -signal.SIGXCPU or cpu > limits["cpu_seconds"]:
            status = "timeout"
        else:
            status = "ok" if returncode == 0 else "error"
    cap = limits["output_bytes"]
    return {
        "status": status,
        "returncode": returncode,
        "stdout": bytes(report["out"][:cap]).decode("utf-8", "replace"),
        "stderr": bytes(report["err"][:cap]).decode("utf-8", "replace"),
        "proof": proof and status == "ok",
        "report": base64.b64encode(report["report"][:cap]).decode(),
        "seconds": report["seconds"],
        "cpu_seconds": cpu,
        "setup": setup,
    }


def _force_remove(function, path, exc_info) -> None:
    # A program may leave a directory without write or search permission for its owner.
    try:
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


# --- the child ---------------------------------------------------------------------------


def _child(job: dict, config: dict, isolation: dict, harness, workdir: str, fds: tuple[int, ...]) -> None:
    """Isolate this process, then run the program; never returns into the worker's loop."""
    setup_fd = fds[SETUP_FD]
    try:
        os.setsid()
        if "memory_group" in config:  # first: every process the job starts is counted with it
            os.write(config["memory_group"].join_fd(), b"0")
        # Copies above every target number first, so that no dup2 clobbers a source.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in fds]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        setup_fd = SETUP_FD
        os.closerange(SETUP_FD + 1, 1 << 20)  # the worker's protocol pipes and every other inherited fd
        setup = _isolate_child(job["limits"], config, isolation, workdir)
        refuse = _gaps(isolation)
        setup["audit_hook"] = sorted(refuse)
        os.write(SETUP_FD, json.dumps(setup).encode())
        os.close(SETUP_FD)
    except BaseException as exc:
        try:
            os.write(setup_fd, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        finally:
            os._exit(SETUP_ERROR)
    code = 1
    try:
        code = harness.run_program(job | {"readable": config.get("readable", [])}, workdir, refuse)
    finally:
        os._exit(code)


def _gaps(isolation: dict) -> frozenset[str]:
    """What the harness's audit hook must refuse because the kernel did not isolate it."""
    own_uid = isolation["uid"] is not None
    gaps = {
        "network": not isolation["netns"],
        "signals": not own_uid and not isolation["pidns"],
        "files": not isolation["readonly"],
        "proc": not own_uid and not (isolation["pidns"] and isolation["mountns"]),
    }
    return frozenset(name for name, gap in gaps.items() if gap)


def _isolate_child(limits: dict, config: dict, isolation: dict, workdir: str) -> dict:
    setup: dict = {}
    uid = isolation["uid"]
    processes = limits["processes"]
    if uid is None:  # RLIMIT_NPROC counts every process of this user, not only the job's
        processes += config["user_tasks"] if "user_tasks" in config else iso.tasks_of(os.getuid())
    mib = 1 << 20
    for name, value in (
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, processes),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mib),
        (resource.RLIMIT_AS, limits["memory_mb"] * mib),
        # whole seconds only: SIGXCPU at the soft limit; the worker compares the exact CPU time
        (resource.RLIMIT_CPU, (math.ceil(limits["cpu_seconds"]), math.ceil(limits["cpu_seconds"]) + 1)),
    ):
        resource.setrlimit(name, value if isinstance(value, tuple) else (value, value))
    if config["namespaces"]:  # while we still may (CAP_SYS_ADMIN): its IPC objects die with the job
        budget = None if "memory_group" in config else limits["memory_mb"] << 20
        setup["ipcns"] = iso.attempt(lambda: iso.private_ipc(budget))
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif isolation["userns"]:
        iso.drop_capabilities()
    iso.prctl(iso.PR_SET_NO_NEW_PRIVS, 1)
    iso.prctl(iso.PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(config["env"], HOME=workdir, TMPDIR=workdir)
    tempfile.tempdir = workdir
    return setup


if __name__ == "__main__":
    sys.exit(main(sys.argv))
