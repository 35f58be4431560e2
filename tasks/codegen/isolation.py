"""The OS layers of the sandbox's jail on Linux, set up by tasks/codegen/jail.py before any untrusted code
runs: cgroups (root only), namespaces (as root directly; as an ordinary user inside a new user namespace),
a new root with only the read-only interpreter, a seccomp filter, rlimits, and the drop to a private uid
(root) or of every capability (user namespace). Stdlib only: the jail imports this file by path, in the
sandboxed child.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import re
import resource
import signal
import struct
import sys

PROGRAM_FILE, PROMPT_FILE = "program.py", "prompt.py"  # the files the parent writes and the jail reads
MiB = 1 << 20
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (
    0x00020000, 0x04000000, 0x10000000, 0x08000000, 0x20000000, 0x40000000)
# What "isolated" means: without these a sample could read the host's files, reach its network or see its
# processes, and code is run only by an explicit opt-in (tasks.codegen.sandbox.Limits.unisolated).
REQUIRED_ISOLATION = ("netns", "pidns", "fsview")
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18


def _libc():

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    ctypes, libc = _libc()
    if libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(), flags,
                  data and data.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount {src} on {target}: {os.strerror(ctypes.get_errno())}")


def join_cgroups(folders: list[str]) -> list[str]:
    """Move this process (and so all it will start) into the sandbox's cgroups (made by the parent)."""
    for folder in folders:
        with open(os.path.join(folder, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    return ["cgroup"] if folders else []


def user_namespace() -> list[str]:
    """As an ordinary user: a new user namespace in which this process holds the capabilities to make the
    other namespaces and the new root (over those namespaces only, never over the host). Its one uid and gid
    map to the user's own, so files it creates on the host (none: /tmp is a tmpfs) would be the user's.
    Nothing where the kernel refuses (user namespaces disabled for unprivileged users)."""
    if not sys.platform.startswith("linux"):
        return []
    _, libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        return []
    try:
        for file, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{file}", "w") as f:
                f.write(text)
    except OSError:
        return []  # a user namespace without its mapping: the later layers fail and say so
    return ["userns"]


def namespaces() -> list[str]:
    """New network, IPC, UTS, PID (for the next fork) and mount namespaces; each skipped if the kernel
    refuses."""
    if not sys.platform.startswith("linux"):
        return []
    _, libc = _libc()
    done = [name for flag, name in ((CLONE_NEWNET, "netns"), (CLONE_NEWIPC, "ipcns"), (CLONE_NEWPID, "pidns"))
            if libc.unshare(flag) == 0]
    if libc.unshare(CLONE_NEWUTS) == 0 and libc.sethostname(b"sandbox", 7) == 0:  # not the host's name
        done.append("utsns")
    if libc.unshare(CLONE_NEWNS) == 0:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
        done.append("mountns")
    return done


def drop_capabilities() -> list[str]:
    """In a user namespace: give up every capability (bounding set, then effective, permitted, inheritable),
    with no_new_privs, so the sample cannot remount, unmount or reconfigure what the jail built."""
    ctypes, libc = _libc()
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP (EINVAL past the last capability: ignored)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable}: all zero
    if libc.syscall(126, header, data) != 0:  # capset (x86_64)
        raise OSError(ctypes.get_errno(), f"capset: {os.strerror(ctypes.get_errno())}")
    return ["nocaps"]


def interpreter_paths() -> list[str]:
    """What the interpreter needs after the jail closes: its prefix (stdlib, lib-dynload) and the shared
    libraries' folders. Folders that are symbolic links on the host come back as the same links."""
    paths = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    for lib in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib"):
        if os.path.isdir(lib) and not os.path.islink(lib):
            paths.add(lib)
    return sorted(p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths))


def mounts_under(path: str) -> list[str]:
    """Mount points at or below `path` in this mount namespace (/proc/self/mountinfo; octal escapes such as
    \\040 for a space decoded), parents first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == path or point.startswith(path.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=len)


def _kept_flags(path: str) -> int:
    """The host mount's flags a remount must keep: in a user namespace the kernel refuses to clear noexec or
    to change the access-time policy of a mount it inherited (statvfs's ST_* bits, as mount's MS_* bits)."""
    flags = os.statvfs(path).f_flag
    kept = {8: 8, 1024: 1024, 2048: 2048, 4096: 1 << 21}  # noexec, noatime, nodiratime, relatime
    return sum(ms for st, ms in kept.items() if flags & st)


def build_root(workdir: str, disk_mb: int, uid: int | None, program: str) -> list[str]:
    """A new root (in this mount namespace): the interpreter read-only, a few devices, /proc of this PID
    namespace and a tmpfs /tmp of disk_mb MiB holding the program; then pivot into it. The host's files,
    its Unix sockets and its writable folders are not in it."""
    ctypes, libc = _libc()
    root = os.path.join(workdir, "root")
    os.mkdir(root, 0o755)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for path in interpreter_paths():
        os.makedirs(root + path, mode=0o755, exist_ok=True)
        _mount(path, root + path, None, MS_BIND | MS_REC)
        for target in mounts_under(root + path):  # the bind and every mount below it: a remount is per mount
            _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | _kept_flags(target))
    for link in ("/lib", "/lib64", "/bin"):
        if os.path.islink(link):
            os.symlink(os.readlink(link), root + link)
    os.makedirs(root + "/dev", mode=0o755)
    for device in ("/dev/null", "/dev/zero", "/dev/urandom"):
        open(root + device, "w").close()
        _mount(device, root + device, None, MS_BIND)
    os.makedirs(root + "/proc", mode=0o555)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV)
    os.makedirs(root + "/tmp")
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0700,size={disk_mb}m{owner}")
    with open(os.path.join(root, "tmp", PROGRAM_FILE), "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(program)
    if uid is not None:
        os.chown(os.path.join(root, "tmp", PROGRAM_FILE), uid, uid)
    os.mkdir(root + "/.old")
    if libc.syscall(155, root.encode(), (root + "/.old").encode()) != 0:  # pivot_root (x86_64)
        raise OSError(ctypes.get_errno(), f"pivot_root: {os.strerror(ctypes.get_errno())}")
    os.chdir("/")
    if libc.umount2(b"/.old", 2) != 0:  # MNT_DETACH
        raise OSError(ctypes.get_errno(), f"umount the old root: {os.strerror(ctypes.get_errno())}")
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir("/tmp")
    return ["fsview", f"tmpfs={disk_mb}MiB"]


# x86_64 syscalls a sample never needs and an attacker wants: EPERM. Kernel keyrings (state that outlives the
# run, shared across uids), fallocate (reserves disk past RLIMIT_FSIZE), ptrace and cross-process memory,
# bpf, perf, userfaultfd, io_uring, kcmp.
DENIED_SYSCALLS = {248: "add_key", 249: "request_key", 250: "keyctl", 285: "fallocate", 101: "ptrace",
                   310: "process_vm_readv", 311: "process_vm_writev", 321: "bpf", 298: "perf_event_open",
                   323: "userfaultfd", 425: "io_uring_setup", 426: "io_uring_enter", 427: "io_uring_register",
                   312: "kcmp"}
AF_VSOCK = 40  # virtual-machine sockets: not namespaced by the network namespace


def seccomp_program() -> bytes:
    """The filter: x86_64 only (another ABI kills the process; x32 numbers are refused), DENIED_SYSCALLS
    refused, unshare/clone refused when they ask for a user namespace, clone3 (whose flags a filter cannot
    read) answered ENOSYS so libc falls back to clone, socket(AF_VSOCK) refused; everything else allowed."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill, errno = 0x7FFF0000, 0x80000000, 0x00050000
    eperm, enosys, eafnosupport = errno | 1, errno | 38, errno | 97
    unshare, clone, clone3, socket_nr, x32 = 272, 56, 435, 41, 0x40000000

    def op(code, jt, jf, k):
        return struct.pack("HBBI", code, jt, jf, k)

    denied = sorted(DENIED_SYSCALLS)
    start = 5 + len(denied)  # BPF jumps go forward only: the checks first, the returns last
    at = {"unshare": start, "clone": start + 1, "clone3": start + 2, "socket": start + 3, "flags": start + 5,
          "domain": start + 8, "enosys": start + 11, "eperm": start + 12, "eafnosupport": start + 13}

    def to(index: int, target: str) -> int:
        return at[target] - index - 1

    code = [op(ld, 0, 0, 4), op(jeq, 1, 0, 0xC000003E), op(ret, 0, 0, kill),  # arch: x86_64 only
            op(ld, 0, 0, 0), op(jge, to(4, "eperm"), 0, x32)]  # the syscall number; x32 numbers: refused
    code += [op(jeq, to(5 + i, "eperm"), 0, nr) for i, nr in enumerate(denied)]
    code += [op(jeq, to(start, "flags"), 0, unshare), op(jeq, to(start + 1, "flags"), 0, clone),
             op(jeq, to(start + 2, "enosys"), 0, clone3), op(jeq, to(start + 3, "domain"), 0, socket_nr),
             op(ret, 0, 0, allow),
             op(ld, 0, 0, 16), op(jset, to(start + 6, "eperm"), 0, CLONE_NEWUSER), op(ret, 0, 0, allow),  # flags
             op(ld, 0, 0, 16), op(jeq, to(start + 9, "eafnosupport"), 0, AF_VSOCK), op(ret, 0, 0, allow),  # domain
             op(ret, 0, 0, enosys), op(ret, 0, 0, eperm), op(ret, 0, 0, eafnosupport)]
    return b"".join(code)


def no_user_namespaces() -> list[str]:
    """Install seccomp_program() on this process (and everything it starts)."""

    if platform.machine() != "x86_64":
        return []
    ctypes, libc = _libc()
    program = seccomp_program()
    buffer = ctypes.create_string_buffer(program)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: required to install a filter unprivileged
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), f"seccomp: {os.strerror(ctypes.get_errno())}")
    return ["seccomp"]


def limits_and_uid(config: dict, jailed: bool) -> list[str]:
    """rlimits and the drop to the private uid (only where the interpreter stays readable: in the new root,
    or on a host where it is not under a folder closed to others); the defences that took effect."""

    done = []
    cpu = math.ceil(config["timeout"]) + 1
    limits = {"RLIMIT_CPU": (cpu, cpu + 1), "RLIMIT_AS": (config["memory_mb"] * MiB,) * 2,
              "RLIMIT_FSIZE": (config["file_mb"] * MiB,) * 2, "RLIMIT_CORE": (0, 0),
              "RLIMIT_NOFILE": (256, 256), "RLIMIT_NPROC": (config["max_procs"],) * 2}
    for name, value in limits.items():
        if hasattr(resource, name):
            resource.setrlimit(getattr(resource, name), value)
            done.append(name.removeprefix("RLIMIT_").lower())
    uid = config["uid"]
    if uid is not None and (jailed or interpreter_open_to_all()):
        _, libc = _libc()
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        done.append(f"uid={uid}")
    return done


def interpreter_open_to_all() -> bool:
    """Every folder on the way to the interpreter's prefix may be entered by others (no pyenv in /root)."""
    for prefix in {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)}:
        parts = prefix.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            if not os.stat("/" + "/".join(parts[:i])).st_mode & 0o001:
                return False
    return True


def wait_and_exit_like(pid: int) -> None:
    """Exit with the program's status, re-raising its fatal signal so the parent sees the same returncode."""
    status = os.waitpid(pid, 0)[1]
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # their handlers cannot be set (and need not be)
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):  # a signal this interpreter does not handle: still re-raised
                pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal whose default is to be ignored: the shell's convention
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)
