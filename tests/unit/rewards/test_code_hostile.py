"""The `code` reward against programs that cheat: every record of the hostile corpus
(tests/fixtures/code_corpus/hostile.json) computes nothing and must score 0.0 under the shipped
defaults, and the host must be left as it was.

A record: `id`, `category`, `program`, `tests` (in any format the reward accepts) and, for a
program that reads what an earlier job left behind, `after` (that job's id: its batch runs
first). Each cheat scores 1.0 under a naive judge (`exec(program); exec(test)` in one process,
or program and test run as one file, or stdout compared for stdio cases); here it must score 0.
The writers (`ps_*_writer`) and `ps_orphan_outlives_job` cheat nothing themselves: they leave
state behind, which a reader or the host checks catch. The reward sees the whole corpus in two
calls (writers first), as an RL step would; the temp directory (the sandbox's, and a planted
dataset file's) is one of this module's own, so that what is left there is this run's.
"""

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import dllm

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")

CORPUS = json.loads((Path(__file__).parents[2] / "fixtures" / "code_corpus" / "hostile.json").read_text())

# Records (and host checks) whose cheat still works today, with why; remove an id as its fix lands
# (strict: an id that stops failing fails the run, so this list stays honest).
KNOWN_TODAY: dict[str, str] = {}  # id -> why it still scores above 0 (none: every cheat scores 0)
SANDBOX_UIDS = range(61000, 61000 + 4096)  # the shipped sandbox_uid and the range _claim_uid searches


def _marks(name: str) -> list:
    return [pytest.mark.xfail(strict=True, reason=KNOWN_TODAY[name])] if name in KNOWN_TODAY else []


def _known(name: str):
    """A host check's own KNOWN_TODAY entry ("host:...")."""

    def mark(test):
        for marker in _marks(name):
            test = marker(test)
        return test

    return mark


def _shm_segments() -> set[int]:
    with open("/proc/sysvipc/shm") as f:
        return {int(line.split()[1]) for line in f.read().splitlines()[1:] if line.strip()}


def _remove_shm(shmid: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.shmctl(shmid, 0, None)  # IPC_RMID


def _processes_of(uids) -> dict[int, int]:
    """pid -> real uid, for the live processes whose uid is in `uids`."""
    found = {}
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.isdigit():
                with open(f"/proc/{entry}/status") as f:
                    uid = int(next(line for line in f if line.startswith("Uid:")).split()[1])
                if uid in uids:
                    found[int(entry)] = uid
    return found


def _digest(path: str) -> tuple[str, int]:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest(), os.stat(path).st_mode


@pytest.fixture(scope="module")
def host():
    """The host before the run, with a world-readable file of every record's tests (a dataset
    on disk, as a cheat would hope to find) in a temp directory of its own, which the sandbox's
    work directories share: left-overs are this run's, not another user's."""
    temp = tempfile.mkdtemp(prefix="dllm-hostile-")
    os.chmod(temp, 0o755)
    planted = os.path.join(temp, "code_tests.json")
    with open(planted, "w") as f:
        json.dump([record["tests"] for record in CORPUS], f)
    os.chmod(planted, 0o644)
    before = {
        "shm": _shm_segments(),
        "dev_shm": set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set(),
        "processes": _processes_of(SANDBOX_UIDS),
        "planted": planted,
        "digest": _digest(planted),
    }
    saved, tempfile.tempdir = tempfile.tempdir, temp
    try:
        yield before
    finally:
        tempfile.tempdir = saved
        for shmid in _shm_segments() - before["shm"]:  # the checks below report them; the host gets them back
            _remove_shm(shmid)
        for name in set(os.listdir("/dev/shm")) - before["dev_shm"] if os.path.isdir("/dev/shm") else ():
            if name.startswith("dllm-hostile"):
                os.unlink(os.path.join("/dev/shm", name))
        shutil.rmtree(temp, ignore_errors=True)  # what the sandbox left too, once the checks have seen it


@pytest.fixture(scope="module")
def scores(host):
    """Every record's score, from the shipped defaults: records with `after` in a second call."""
    reward = dllm.build("reward", "code")
    try:
        result = {}
        first = [record for record in CORPUS if "after" not in record]
        for batch in (first, [record for record in CORPUS if "after" in record]):
            completions = ["```python\n" + record["program"] + "\n```" for record in batch]
            values = reward(["prompt"] * len(batch), completions, tests=[record["tests"] for record in batch])
            result.update(zip((record["id"] for record in batch), values))
        host["sandbox_dirs"] = [name for name in os.listdir(tempfile.gettempdir()) if name.startswith("dllm-sandbox-")]
        # private, but the only record of which uids this sandbox claimed (others may run beside it)
        host["uids"] = {slot._uid for slot in reward.sandbox._slots if slot._uid is not None}
    finally:
        reward.close()
    return result


def test_the_corpus_is_well_formed():
    ids = [record["id"] for record in CORPUS]
    assert len(ids) == len(set(ids))
    assert set(KNOWN_TODAY) - set(ids) <= {name for name in KNOWN_TODAY if name.startswith("host:")}
    by_category: dict[str, int] = {}
    for record in CORPUS:
        by_category[record["category"]] = by_category.get(record["category"], 0) + 1
        assert record.get("after") in (None, *ids[: ids.index(record["id"])])
    assert min(by_category.values()) >= 3
    kinds = {
        "stdio" if isinstance(r["tests"][0], dict) else "check" if "def check" in r["tests"][0] else "assert"
        for r in CORPUS
    }
    assert kinds == {"stdio", "check", "assert"}


@pytest.mark.parametrize("name", [pytest.param(r["id"], id=r["id"], marks=_marks(r["id"])) for r in CORPUS])
def test_hostile_program_scores_zero(scores, name):
    assert scores[name] == 0.0


# The host, after the whole corpus ran and the reward closed.


@_known("host:shm")
def test_no_shm_segment_left(scores, host):
    assert _shm_segments() - host["shm"] == set()


@_known("host:dev_shm")
def test_no_posix_shm_file_left(scores, host):
    assert (set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()) - host["dev_shm"] == set()


@_known("host:processes")
def test_no_sandbox_process_left(scores, host):
    if not host["uids"]:
        pytest.skip("the sandbox ran without uids of its own (not root): no process to tell apart")
    left = {pid: uid for pid, uid in _processes_of(host["uids"]).items() if host["processes"].get(pid) != uid}
    assert left == {}


@_known("host:sandbox_dir")
def test_no_sandbox_directory_left(scores, host):
    assert host["sandbox_dirs"], "the sandbox kept its work directories elsewhere: nothing to check"
    temp = os.path.dirname(host["planted"])
    assert [name for name in os.listdir(temp) if name.startswith("dllm-sandbox-")] == []


@_known("host:planted")
def test_the_planted_file_is_unchanged(scores, host):
    assert _digest(host["planted"]) == host["digest"]
