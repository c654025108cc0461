"""What the kernel isolates beyond one process: a program sees only the interpreter, the
standard library and the allowed packages; its IPC objects, memory and processes end with
the job, also when the sandbox's parent dies; the harness's report channel never blocks."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dllm
from dllm.sandbox import Job, Limits, Sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")

LIMITS = Limits(cpu_seconds=5, wall_seconds=10, memory_mb=512, processes=16, output_bytes=256 * 1024)
SHM_KEY = 0x5EED0000 + os.getpid() % 0xFFFF


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=1, limits=LIMITS) as sandbox:
        yield sandbox


def run(sandbox, program, **job):
    return sandbox.run([Job(textwrap.dedent(program), **job)])[0]


def host_shm_keys() -> set[int]:
    with open("/proc/sysvipc/shm") as f:
        return {int(line.split()[0]) for line in list(f)[1:]}


def test_sysv_shared_memory_dies_with_the_job(sandbox):
    shmget = f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        shmid = libc.shmget({SHM_KEY}, ctypes.c_size_t({{size}}), {{flags}})
        print(shmid, ctypes.get_errno())
        """
    created = run(sandbox, shmget.format(size=256 << 20, flags="0o1666"))  # IPC_CREAT | 0666
    assert created.status == "ok" and int(created.stdout.split()[0]) >= 0, created
    assert SHM_KEY not in host_shm_keys()  # not on the host, during or after the job
    attached = run(sandbox, shmget.format(size=0, flags=0))  # a later job looks it up by key
    assert attached.stdout.split() == ["-1", "2"]  # ENOENT: gone with the job before
    assert sandbox.isolation["ipcns"] is True


def test_memory_budget_covers_every_process_of_a_job(sandbox):
    if sandbox.isolation.get("memory") == "rlimit_as":
        pytest.skip("no memory cgroup here: memory_mb bounds each process (RLIMIT_AS)")
    program = """
        import os, time
        children = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                data = b"x" * (300 << 20)  # touched: every page counts
                time.sleep(1)
                os._exit(0)
            children.append(pid)
        print(all(os.waitpid(pid, 0)[1] == 0 for pid in children))
        """
    result = run(sandbox, program)
    assert result.status == "memory_limit" and not result.passed, result
    after = run(sandbox, "data = b'x' * (300 << 20)\nprint(len(data) >> 20)")  # one process within budget
    assert (after.status, after.stdout) == ("ok", "300\n")


def test_program_sees_only_the_interpreter_stdlib_and_allowed_packages(sandbox, tmp_path):
    host_tmp = tmp_path / "answers.txt"
    host_tmp.write_text("42\n")
    host_tmp.chmod(0o644)
    tmp_path.chmod(0o755)
    secrets = [
        Path(dllm.__file__).parent / "data" / "samples" / "tracerl_code.json",  # dllm's shipped samples
        host_tmp,  # world-readable, in the host's temp directory
        Path(pytest.__file__),  # another package of the same site-packages
        Path(dllm.__file__).parent / "sandbox" / "harness.py",  # the sandbox's own code
        Path(sandbox._root) / "worker-0.log",
    ]
    assert all(path.exists() for path in secrets)
    program = "\n".join(
        f"try:\n    open({str(p)!r}, 'rb').read()\n    print('read')\nexcept OSError as e:\n    print(type(e).__name__)"
        for p in secrets
    )
    result = run(sandbox, program)
    assert result.stdout.split() == ["FileNotFoundError"] * len(secrets), result
    libraries = run(sandbox, "import json, math, collections, ssl, hashlib\nprint(hashlib.sha256(b'').hexdigest()[:8])")
    assert (libraries.status, libraries.stdout) == ("ok", "e3b0c442\n"), libraries
    assert run(sandbox, "import pytest").status == "error"
    assert run(sandbox, "import dllm").status == "error"


def test_numpy_is_allowed_where_installed(sandbox):
    pytest.importorskip("numpy")
    result = run(sandbox, "import numpy as np\nprint(int(np.arange(10).sum()))")
    assert (result.status, result.stdout) == ("ok", "45\n"), result


def test_report_channel_returns_large_reports_and_caps_them(sandbox):
    fits = run(sandbox, "import os\ndata = bytes(range(256)) * 800\nwhile data:\n    data = data[os.write(4, data):]")
    assert (fits.status, fits.report) == ("ok", bytes(range(256)) * 800)  # 200 KiB: more than a pipe holds
    too_much = run(sandbox, "import os\nwhile True:\n    os.write(4, bytes(65536))")
    assert too_much.status == "output_limit" and len(too_much.report) == LIMITS.output_bytes


PARENT = """
import sys, threading, time
from dllm.sandbox import Job, Sandbox
sandbox = Sandbox(workers=1)
print(sandbox._root, sandbox.isolation["uid"], flush=True)
threading.Thread(target=sandbox.run, args=([Job("import time\\ntime.sleep(60)")],)).start()
time.sleep(60)
"""


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                found.append(int(entry))
        except OSError:
            pass
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="finds the job's processes by the slot's uid (root only)")
def test_killing_the_parent_ends_the_job_and_removes_its_files():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        root, uid = parent.stdout.readline().split()
        deadline = time.monotonic() + 10
        while not processes_of(int(uid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_of(int(uid)), "the job never started"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    time.sleep(1.5)
    assert processes_of(int(uid)) == []
    assert not os.path.exists(root)


def test_without_a_mount_namespace_the_audit_hook_refuses_reading_outside_the_libraries(tmp_path):
    samples = Path(dllm.__file__).parent / "data" / "samples" / "tracerl_code.json"
    (tmp_path / "answers.txt").write_text("42\n")
    reads = [f"open({str(path)!r}).read()" for path in (samples, tmp_path / "answers.txt", Path(pytest.__file__))]
    with Sandbox(workers=1, limits=LIMITS, namespaces=False, uid=None) as sandbox:
        results = sandbox.run([Job(program) for program in reads] + [Job("import json, hashlib\nprint('ok')")])
        assert "files" in sandbox.isolation["audit_hook"]
    for result in results[:-1]:
        assert result.status == "error" and "PermissionError: the sandbox refuses reading" in result.stderr, result
    assert (results[-1].status, results[-1].stdout) == ("ok", "ok\n")
