"""The kernel side of the sandbox: namespaces, the new root, memory cgroups, capabilities
(Linux, via libc).

Loaded by path into the sandbox worker (stdlib only), which decides what to use; each
function here does one step and raises OSError when the kernel refuses it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import sys
import sysconfig

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWIPC = 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MS_MOVE = 8192
MNT_DETACH = 2
LIBRARY_DIRS = ("/lib", "/lib32", "/lib64", "/usr/lib", "/usr/lib32", "/usr/lib64")  # libc, libssl, ld.so...
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # no libc wrapper
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


def new_root(config: dict, new_proc: bool) -> None:
    """Put this worker (and so every child) in a private mount namespace whose root is a
    read-only tmpfs holding only what a program needs, each bound read-only at its own path:
    `needed_paths(config["packages"])`, a few /dev nodes, a /proc (of our PID namespace when
    `new_proc`) and the (empty) work directory, where each job gets a fresh tmpfs. The host's
    files (datasets, dllm's own, /tmp, home directories, other site-packages, the sandbox's
    own files) are not in it. `config["workdir"]`, `config["newroot"]`: empty directories
    (the mount points; on the host they stay empty)."""
    workdir, new = config["workdir"], config["newroot"]
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    needed = needed_paths(config["packages"])
    for path in outermost(needed):
        bind_readonly(path, new + path)
    for path in LIBRARY_DIRS:  # e.g. /lib64 -> usr/lib64, where the ELF interpreter is named
        if os.path.islink(path):
            os.symlink(os.readlink(path), new + path)
    for path in hidden_paths(needed):
        mount("tmpfs", new + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")
    for name in ("null", "zero", "random", "urandom"):
        bind_readonly(f"/dev/{name}", f"{new}/dev/{name}", writable=name in ("null", "zero"))
    os.makedirs(f"{new}/dev/shm", mode=0o755)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "fd/0"), ("stdout", "fd/1"), ("stderr", "fd/2")):
        os.symlink(target, f"{new}/dev/{name}")
    os.makedirs(new + "/proc", mode=0o755)
    if new_proc:  # we are the init of our own PID namespace: show only its processes
        mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    else:
        mount("/proc", new + "/proc", None, MS_BIND | MS_REC)
    os.makedirs(new + workdir, mode=0o755)
    os.chmod(new + workdir, 0o711)
    enter_root(new)
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def needed_paths(packages: list[str]) -> list[str]:
    """What a program sees, besides /dev and /proc: the interpreter binary (and libpython),
    the standard library (never a site-packages), the shared libraries that extension modules
    link (/lib, /usr/lib, ...) and `packages` (directories or files of allowed packages)."""
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix, "installed_base": sys.base_prefix}
    stdlib = {sysconfig.get_path(name, vars=base) for name in ("stdlib", "platstdlib")}
    paths = stdlib | {os.path.join(p, "lib-dynload") for p in stdlib} | {os.path.realpath(sys.executable)}
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        paths.add(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")))
    paths |= {*LIBRARY_DIRS, "/etc/ld.so.cache", *packages}
    return sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})


def outermost(paths: list[str]) -> list[str]:
    """`paths` less those inside another one (binding the outer one shows them)."""
    return [p for p in paths if not any(under(p, q) and p != q for q in paths)]


def hidden_paths(needed: list[str]) -> list[str]:
    """Directories inside the bound ones that hold other Python packages (site-packages,
    dist-packages, another Python's library under /usr/lib), unless a needed path is in them."""
    found = []
    for directory in outermost(needed):
        if not os.path.isdir(directory):
            continue
        for entry in os.listdir(directory):
            path = os.path.join(directory, entry)
            python_dir = entry in ("site-packages", "dist-packages") or re.fullmatch(r"python[0-9.]*", entry)
            if python_dir and os.path.isdir(path) and not any(under(v, path) for v in needed):
                found.append(path)
    return found


def bind_readonly(source: str, target: str, writable: bool = False) -> None:
    """Bind `source` (a directory or a file) at `target`, creating the mount point."""
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    mount(source, target, None, MS_BIND)
    if not writable:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


def enter_root(new: str) -> None:
    """Make `new` (a mount point) the root and detach the old one: pivot_root where the
    kernel allows it (not on an initramfs root), else move the mount onto / and chroot."""
    number = SYS_PIVOT_ROOT.get(platform.machine())
    old = os.path.join(new, ".old-root")
    os.mkdir(old)
    if number is not None and libc.syscall(number, new.encode(), old.encode()) == 0:
        os.chdir("/")
        check(libc.umount2(b"/.old-root", MNT_DETACH), "umount the old root")
        os.rmdir("/.old-root")
        return
    os.rmdir(old)
    os.chdir(new)
    mount(new, "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(os.path.join(directory, ""))


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


def private_ipc(memory_bytes: int | None) -> None:
    """A System V IPC namespace of this process's own: shared memory, message queues and
    semaphores die with its last process, so nothing passes to the next job or stays on the
    host. `memory_bytes`: where no memory cgroup charges shared memory to the job, its bound
    on the namespace's shared memory (each /proc/sys write costs ~0.25 ms: only then)."""
    unshare(CLONE_NEWIPC)
    if memory_bytes is not None:
        pages = max(1, memory_bytes // os.sysconf("SC_PAGE_SIZE"))
        # a read-only /proc/sys: the namespace alone still ends it all with the job
        with contextlib.suppress(OSError), open("/proc/sys/kernel/shmall", "w") as f:
            f.write(str(pages))


class MemoryGroup:
    """One memory cgroup per worker slot, reused by every job: each job's processes join it,
    so `memory_mb` bounds all of them together, and the kernel's OOM killer ends a job over it.
    cgroup v2 where our cgroup delegates the memory controller, else v1's memory controller.
    Every file is opened at start, before the worker's root changes (its new root has no /sys)."""

    def __init__(self, name: str) -> None:
        self.path, self.version = _memory_cgroup_dir(name)
        os.mkdir(self.path, 0o700)
        v2 = self.version == 2
        names = ["memory.max", "memory.swap.max"] if v2 else ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        # without swap accounting, there is no swap limit to set (nor swap to escape to)
        self._limit_names = [n for n in names if os.path.exists(os.path.join(self.path, n))]
        self._fds = {n: os.open(os.path.join(self.path, n), os.O_WRONLY) for n in ["cgroup.procs", *self._limit_names]}
        self._events = os.open(os.path.join(self.path, "memory.events" if v2 else "memory.oom_control"), os.O_RDONLY)
        self.limit: float = float("inf")  # a new group has no limit

    def set_limit(self, memory_bytes: int) -> None:
        if memory_bytes == self.limit:
            return
        # v1 wants memory <= memory+swap at every step: shrinking, lower memory first; growing, memory+swap
        names = self._limit_names if memory_bytes < self.limit or self.version == 2 else self._limit_names[::-1]
        for name in names:
            value = 0 if name == "memory.swap.max" else memory_bytes
            os.pwrite(self._fds[name], str(value).encode(), 0)
        self.limit = memory_bytes

    def join_fd(self) -> int:
        """Writing "0" here (in the child, before it runs anything) moves the writer in."""
        return self._fds["cgroup.procs"]

    def oom_kills(self) -> int:
        """OOM kills in this group so far (a job over its budget raised it)."""
        text = os.pread(self._events, 4096, 0).decode()
        match = re.search(r"^oom_kill (\d+)", text, re.MULTILINE)
        return int(match.group(1)) if match else 0

    def remove(self) -> None:
        """Remove the group (it must be empty: after every process of the job is gone)."""
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def _memory_cgroup_dir(name: str) -> tuple[str, int]:
    """Where our slot's memory cgroup goes: under this process's own cgroup, v2 if its
    parent delegates the memory controller, else v1's memory hierarchy; OSError if neither."""
    with open("/proc/self/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, controllers, path in lines:
        if controllers == "":  # the v2 hierarchy
            for mount_point in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                directory = mount_point + path.rstrip("/")
                enabled = os.path.join(directory, "cgroup.subtree_control")
                with contextlib.suppress(OSError), open(enabled) as f:
                    if "memory" in f.read().split() and os.access(directory, os.W_OK):
                        return os.path.join(directory, name), 2
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):
            directory = "/sys/fs/cgroup/memory" + path.rstrip("/")
            if os.access(directory, os.W_OK):
                return os.path.join(directory, name), 1
    raise OSError("no writable memory cgroup (v2 with the memory controller delegated, or v1)")
