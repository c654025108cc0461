"""The kernel side of the sandbox: namespaces, mounts, capabilities (Linux, via libc).

Loaded by path into the sandbox worker (stdlib only), which decides what to use; each
function here does one step and raises OSError when the kernel refuses it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
MS_RELATIME, MS_STRICTATIME, MS_MOVE = 1 << 21, 1 << 24, 8192
MNT_DETACH = 2
MOUNT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    check(libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    args = [None if arg is None else arg.encode() for arg in (source, target, fstype)]
    check(libc.mount(*args, flags, None if data is None else data.encode()), f"mount {target}")


def prctl(option: int, value: int) -> None:
    check(libc.prctl(option, value, 0, 0, 0), f"prctl {option}")


def attempt(step) -> bool:
    try:
        step()
        return True
    except OSError:
        return False


def enter_user_namespace() -> None:
    uid, gid = os.getuid(), os.getgid()
    unshare(CLONE_NEWUSER)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def exposures_for(root: bool, sandbox_root: str) -> list[tuple[str, list[str]]]:
    """What each job hides: as root, the directories that keep the interpreter from the
    sandbox uid (e.g. /root), with the interpreter bound back; not root, the user's home."""
    if root:
        return exposures(closed_to_others, sandbox_root)
    home = os.path.realpath(os.path.expanduser("~"))
    if home == "/" or not os.path.isdir(home):
        return []
    return exposures(lambda directory: directory == home, sandbox_root, [home])


def private_mounts(config: dict, new_proc: bool) -> bool:
    """Put this worker (and so every child) in a private mount namespace: every mount
    read-only, the `exposures` hidden but for the interpreter, a /proc of our PID namespace.
    Creates `config["workdir"]`, where each job gets a fresh tmpfs. True when every mount
    could be made read-only."""
    workdir = config["workdir"] = tempfile.mkdtemp(prefix="work-", dir=config["root"])
    os.chmod(workdir, 0o711)
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mounts = mount_points()
    hidden_dirs = config.get("exposures", [])
    for hidden, paths in hidden_dirs:
        expose(hidden, paths, workdir)
    skip = ("/proc/", "/dev/") + tuple(os.path.join(hidden, "") for hidden, _ in hidden_dirs)
    complete = True
    for path, flags in mounts:
        if path == "/proc" or path.startswith(skip):
            continue
        try:
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            complete = False
    if new_proc:  # we are the init of our own PID namespace: show only its processes
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return complete


def exposures(blocks, sandbox_root: str, always: list[str] = ()) -> list[tuple[str, list[str]]]:
    """The directories to hide in each child, each with the interpreter's directories
    (installation, sys.path) under it to bind back: `[(hidden, [path, ...]), ...]`.
    `blocks(directory)`: whether a proper ancestor of an interpreter directory is to be
    hidden (the highest such one is); `always`: hidden in any case. Never a directory that
    holds the work directories."""
    paths = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, *sys.path) if p and os.path.isdir(p)})
    groups: dict[str, list[str]] = {}
    for path in paths:
        if any(under(path, kept) for group in groups.values() for kept in group):
            continue  # inside a directory bound back already
        hidden = next((a for a in ancestors(path) if blocks(a)), None)
        if hidden is not None:
            groups.setdefault(hidden, []).append(path)
    for hidden in always:
        groups.setdefault(hidden, [])
    root = os.path.realpath(sandbox_root)
    return sorted((hidden, paths) for hidden, paths in groups.items() if not under(root, hidden))


def ancestors(path: str) -> list[str]:
    """Proper ancestors of an absolute path, from the top: /a/b/c -> [/a, /a/b]."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(os.path.join(directory, ""))


def closed_to_others(directory: str) -> bool:
    # The sandbox uid owns nothing and has no groups: only the "others" bits apply to it.
    return not os.stat(directory).st_mode & 0o001


def expose(blocker: str, paths: list[str], workdir: str) -> None:
    # Cover `blocker` (e.g. /root) with an empty read-only tmpfs and bind `paths` back in,
    # read-only: the program reaches the interpreter, and nothing else that was there.
    stages = []
    for i, path in enumerate(paths):
        stage = os.path.join(workdir, f".expose-{i}")
        os.mkdir(stage)
        mount(path, stage, None, MS_BIND | MS_REC)
        stages.append(stage)
    mount("tmpfs", blocker, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    for stage, path in zip(stages, paths):
        os.makedirs(path, mode=0o755, exist_ok=True)
        mount(stage, path, None, MS_MOVE)
        mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        os.rmdir(stage)
    mount(None, blocker, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mount_points() -> list[tuple[str, int]]:
    """(mount point, per-mount flags to keep) for every mount, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            path = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            flags = 0
            for option in fields[5].split(","):
                flags |= MOUNT_FLAGS.get(option, 0)
            points.append((path, flags))
    return points


def tasks_of(uid: int) -> int:
    """Threads of every process of `uid`: what RLIMIT_NPROC counts when we cannot switch uid."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            if int(status["Uid"].split()[0]) == uid:
                total += int(status["Threads"])
        except (OSError, KeyError, ValueError):
            pass
    return total


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    # Inside our user namespace the child holds every capability over it (its mounts, its
    # namespaces); it must not be able to undo them, e.g. unmount the private /proc.
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    check(libc.capset(ctypes.byref(header), (_CapData * 2)()), "capset")


def mount_job_directories(workdir: str, file_mb: int, uid: int | None) -> None:
    """A fresh tmpfs on the work directory (at most 4 files of the maximum size, 4096 inodes:
    no program fills the disk) and on /dev/shm, in the worker's mount namespace."""
    owner = "" if uid is None else f",uid={uid},gid={uid}"
    mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={4 * file_mb}m,nr_inodes=4096,mode=700{owner}")
    if os.path.isdir("/dev/shm"):
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={file_mb}m,mode=1777")


def unmount_job_directories(workdir: str) -> None:
    """Detach what `mount_job_directories` mounted (every process of the job is gone)."""
    for path in (workdir, "/dev/shm"):
        with contextlib.suppress(OSError):  # /dev/shm may not exist
            check(libc.umount2(path.encode(), MNT_DETACH), f"umount {path}")
