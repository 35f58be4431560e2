"""What each sandboxed program holds on the host, and how it is taken back: its private uid (leased, as root),
its cgroups (as root), its processes (found by group, uid or parent in /proc, and killed) and its temporary
folder (removed however deep). The sandbox (tasks.codegen.sandbox) calls these around every jailed process.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import subprocess
import threading
import time

UID_RANGE = (1 << 20, 1 << 21)  # private uids: unlikely to own anything or to collide across evaluators
_uids_in_use: set[int] = set()
_uid_lock = threading.Lock()


def remove_tree(path: str) -> None:
    """Delete a folder however deep it goes, without recursion and without long paths: a subfolder's
    entries are moved up into `path` (one level at a time, by file descriptor) until all is flat."""
    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        moved = 0
        while True:
            progress = False
            with os.scandir(top) as entries:
                names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
            for name, is_dir in names:
                if not is_dir:
                    os.unlink(name, dir_fd=top)
                    progress = True
                    continue
                try:
                    os.rmdir(name, dir_fd=top)
                    progress = True
                    continue
                except OSError:
                    pass
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
                try:
                    os.chmod(sub, 0o700)
                    with os.scandir(sub) as inner:
                        children = [e.name for e in inner]
                    for child in children:
                        moved += 1
                        os.rename(child, f".flat{moved}", src_dir_fd=sub, dst_dir_fd=top)
                        progress = True
                finally:
                    os.close(sub)
            if not names or not progress:
                break
    except OSError:
        pass
    finally:
        os.close(top)
    try:
        os.rmdir(path)
    except OSError:
        pass


CGROUP_ROOT = "/sys/fs/cgroup"


def make_cgroups(name: str, memory_mb: int, max_procs: int) -> list[str]:
    """Cgroups for one sandbox, so its memory and its processes are limited together, not per process
    (16 processes of 512 MB each would otherwise be allowed): cgroup v1's memory and pids controllers, or
    v2's where they are enabled. Folders the child joins; none where the hierarchy is not writable."""
    limits = {"memory": {"memory.limit_in_bytes": memory_mb << 20}, "pids": {"pids.max": max_procs}}
    v2 = {"memory.max": memory_mb << 20, "pids.max": max_procs}
    made = []
    for controllers, path in _own_cgroups():
        if controllers in limits:
            base, files = os.path.join(CGROUP_ROOT, controllers), limits[controllers]
        elif controllers == "" and os.path.isfile(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
            base, files = CGROUP_ROOT, v2
        else:
            continue
        folder = os.path.join(base + path, f"gptsuite-{name}")
        try:
            os.mkdir(folder)
        except OSError:
            continue
        try:
            for file, value in files.items():
                with open(os.path.join(folder, file), "w") as f:
                    f.write(str(value))
            made.append(folder)
        except OSError:
            remove_cgroup(folder)
    return made


@functools.cache
def _own_cgroups() -> tuple[tuple[str, str], ...]:
    """(controllers, path) of this process's cgroups, read once."""
    try:
        with open("/proc/self/cgroup") as f:
            return tuple(tuple(line.rstrip("\n").split(":", 2)[1:]) for line in f)
    except OSError:
        return ()


def remove_cgroup(folder: str) -> None:
    for _ in range(100):  # empty once its processes are reaped, which may take a moment after SIGKILL
        try:
            os.rmdir(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


def lease_uid() -> int:
    """A uid no other running sandbox uses, so killing "everything of this uid" hits only this program."""
    with _uid_lock:
        while True:
            uid = secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0]
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def processes_of(pgid: int | None = None, uid: int | None = None, ppid: int | None = None) -> list[int]:
    """Live (non-zombie) pids in process group `pgid`, with real uid `uid` or with parent `ppid`, from /proc
    (Linux). The uid is read (a second file per process) only when asked for."""
    pids = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            state, parent, group = fields[0], int(fields[1]), int(fields[2])
            if state in "ZX":
                continue
            if (pgid is not None and group == pgid) or (ppid is not None and parent == ppid):
                pids.append(int(name))
            elif uid is not None:
                with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as f:
                    if next(int(line.split()[1]) for line in f if line.startswith("Uid:")) == uid:
                        pids.append(int(name))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return pids


def kill_everything(proc: subprocess.Popen, uid: int | None) -> None:
    """SIGKILL everything of the program: the PID namespace's init (the jail's child: its death takes the
    namespace and all in it down, and lets the waiting jail reap it, so no zombie is left to init) and its
    private uid's processes first, then the process group, then anything that is still alive by group or
    uid (setsid escapes, fork bombs)."""
    init = children_of(proc.pid)  # found before the jail dies: its children then belong to init
    _kill_pids(init)
    if uid is not None:
        _kill_pids(processes_of(uid=uid))
    if init or uid is not None:  # the jail reaps its child and exits like it: no zombie for the host's init
        try:  # (without a child, the jail is the program itself: nothing would end it, so no waiting)
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for _ in range(200):  # RLIMIT_NPROC bounds how many there can be; killed processes cannot fork
        stray = processes_of(pgid=proc.pid, uid=uid)
        if not stray:
            return
        _kill_pids(stray)
        time.sleep(0.005)


def children_of(pid: int) -> list[int]:
    """The children of `pid` (Linux /proc: its `children` file, else every process's parent; none elsewhere)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):  # a kernel without CONFIG_PROC_CHILDREN
        return processes_of(ppid=pid)


def _kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def release_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)
