"""The child side of the sandbox (tasks.codegen.sandbox): run as `python -I jail.py CONFIG`, stdlib only.

As root on Linux the child builds its jail before any untrusted code runs, and reports which layers took
effect (the first line on its report pipe, "ready <layers>"):

    cgroup    the sandbox's memory and process count limited together (cgroup memory and pids controllers)
    netns     an empty network namespace: no network, no abstract Unix sockets of the host
    ipcns     its own SysV IPC and POSIX message queues: nothing it creates outlives it
    pidns     its own PID namespace: it sees only its processes, and they all die with it
    mountns   its own mounts, then `fsview`: a new root holding only the interpreter and its libraries
              (read-only), /dev/null, /dev/zero, /dev/urandom, a private /proc and a writable /tmp
    tmpfs=N   that /tmp is a tmpfs of N MiB: the disk quota (and nothing written there reaches the host)
    cpu, as, fsize, core, nofile, nproc   rlimits
    uid=N     a private unprivileged uid; no_new_privs (no setuid binary regains root)
    seccomp   a filter refusing new user namespaces (unshare / clone with CLONE_NEWUSER; clone3 answers
              ENOSYS so libc falls back to clone), kernel keyrings, fallocate, ptrace and cross-process
              memory, bpf, perf, userfaultfd, io_uring, AF_VSOCK sockets and foreign syscall ABIs
    audit     audit hooks closing the routes from the program to the harness's frames and objects
              (sys._getframe, tracebacks' and generators' frames, gc, tracing, ctypes)

Three roles:
    program   run a program; the per-run token goes to the report pipe only if it returns normally
    serve     run a solution, then answer calls to its functions, arguments and results as plain data
    test      run the tests in a process of their own, the solution's functions replaced by proxies that
              call the serving process: the verdict (the token) never shares a process with model code, and
              a result can only be plain data (no object whose __eq__ is always True crosses over)
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys

PROGRAM_FILE = "program.py"
MiB = 1 << 20
MAX_MESSAGE = 64 * MiB  # one call's arguments or result
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (
    0x00020000, 0x10000000, 0x08000000, 0x20000000, 0x40000000)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18


# --------------------------------------------------------------------------------------------------------
# plain data: what may cross between the serving and the testing process
# --------------------------------------------------------------------------------------------------------
def to_plain(value, depth: int = 0):
    """A JSON-able tagged form of a value built only from the exact builtin types (no subclasses: they
    could carry their own __eq__ or __repr__); anything else raises TypeError."""
    if depth > 100:
        raise TypeError("the value is nested more than 100 levels deep")
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value if abs(value) < 2**53 else ["int", hex(value)]  # hex: no 4,300-digit limit
    if kind is float:
        return ["float", repr(value)]  # nan, inf and -0.0 survive
    if kind is complex:
        return ["complex", repr(value.real), repr(value.imag)]
    if kind is bytes:
        return ["bytes", value.hex()]
    if kind in (list, tuple, set, frozenset):
        items = sorted(value, key=repr) if kind in (set, frozenset) else value
        return [kind.__name__, [to_plain(v, depth + 1) for v in items]]
    if kind is dict:
        return ["dict", [[to_plain(k, depth + 1), to_plain(v, depth + 1)] for k, v in value.items()]]
    raise TypeError(f"a {kind.__module__}.{kind.__qualname__} cannot leave the sandbox (plain data only)")


def from_plain(data):
    if data is None or type(data) in (bool, str, int):
        return data
    tag, *rest = data
    if tag == "int":
        return int(rest[0], 16)
    if tag == "float":
        return float(rest[0])
    if tag == "complex":
        return complex(float(rest[0]), float(rest[1]))
    if tag == "bytes":
        return bytes.fromhex(rest[0])
    if tag in ("list", "tuple", "set", "frozenset"):
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](from_plain(v) for v in rest[0])
    if tag == "dict":
        return {from_plain(k): from_plain(v) for k, v in rest[0]}
    raise ValueError(f"not plain data: tag {tag!r}")


def send(fd: int, message) -> None:
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"a message of {len(data)} bytes is over the {MAX_MESSAGE >> 20} MiB limit")
    data = struct.pack("<Q", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def receive(fd: int):
    """The next message, or None when the other side has gone."""
    head = _read_exactly(fd, 8)
    if head is None:
        return None
    (size,) = struct.unpack("<Q", head)
    if size > MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes announced: over the limit")
    body = _read_exactly(fd, size)
    return None if body is None else json.loads(body)


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------------------
# the roles
# --------------------------------------------------------------------------------------------------------
def run_program(source: str, token: str, report_fd: int, guard: bool) -> None:
    """Execute the program; the token goes to the report pipe only if it returned normally."""
    write, exit_now = os.write, os._exit  # kept before the guard removes them
    close_routes(guard)
    try:
        code = compile(source, PROGRAM_FILE, "exec")
        exec(code, {"__name__": "__main__", "__file__": PROGRAM_FILE, "__builtins__": __builtins__})
        sys.stdout.flush()
    except BaseException as e:  # noqa: BLE001 - SystemExit included: exiting early is not passing
        write(report_fd, f"raised {type(e).__name__}: {e}"[:300].replace("\n", " ").encode() + b"\n")
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.stderr.flush()
        exit_now(1)
    write(report_fd, (token + "\n").encode())
    exit_now(0)


def serve(source: str, requests: int, responses: int, guard: bool) -> None:
    """Run the solution, send the names of its functions, then answer {"call": name, "args", "kwargs"}
    with {"value": plain} or {"raised": [type, message]} until the tests hang up."""
    write_message, read_message, exit_now = send, receive, os._exit
    close_routes(guard)
    namespace = {"__name__": "__main__", "__file__": PROGRAM_FILE, "__builtins__": __builtins__}
    try:
        exec(compile(source, PROGRAM_FILE, "exec"), namespace)
    except BaseException as e:  # noqa: BLE001 - the solution failed to load: every call fails
        write_message(responses, {"load_error": f"{type(e).__name__}: {e}"[:300]})
        exit_now(1)
    write_message(responses, {"names": sorted(n for n, v in list(namespace.items())
                                              if isinstance(n, str) and callable(v) and not n.startswith("__"))})
    while (request := read_message(requests)) is not None:
        try:
            args = from_plain(request["args"])
            kwargs = from_plain(request["kwargs"])
            reply = {"value": to_plain(namespace[request["call"]](*args, **kwargs))}
        except BaseException as e:  # noqa: BLE001 - SystemExit too: it is the call's result
            reply = {"raised": [type(e).__name__, str(e)[:300]]}
        try:
            write_message(responses, reply)
        except BaseException as e:  # noqa: BLE001 - e.g. too big
            write_message(responses, {"raised": [type(e).__name__, str(e)[:300]]})
    sys.stdout.flush()
    exit_now(0)


class SolutionFunction:
    """Stands in the tests for a function of the solution: calls it in the serving process."""

    def __init__(self, name: str, requests: int, responses: int):
        self.name, self.requests, self.responses = name, requests, responses

    def __call__(self, *args, **kwargs):
        send(self.requests, {"call": self.name, "args": to_plain(args), "kwargs": to_plain(kwargs)})
        reply = receive(self.responses)
        if reply is None:
            raise RuntimeError(f"the solution's process ended during a call to {self.name}")
        if "raised" in reply:
            kind, message = reply["raised"]
            import builtins

            builtin = getattr(builtins, kind, None)  # the call's exception, as a builtin type where it is one,
            # except those that steer control flow (a StopIteration ends the tests' map() or all() early)
            plain = isinstance(builtin, type) and issubclass(builtin, Exception) and not issubclass(
                builtin, (StopIteration, StopAsyncIteration))
            error = builtin if plain else RuntimeError
            raise error(f"{message}" if error is not RuntimeError else f"{kind}: {message}")
        return from_plain(reply["value"])

    def __repr__(self) -> str:
        return f"<function {self.name} of the solution>"


def solution_names_to_call(names, entry_point: str, tests, prompt_namespace: dict) -> set[str]:
    """The solution's functions the tests may call: the entry point, and the names the tests use that
    neither the prompt nor Python itself defines. Never a builtin (a solution's `abs` or `isinstance`
    standing in for Python's could answer the tests' own checks) and never a dunder."""
    import builtins
    import keyword

    used, stack = set(), [tests]
    while stack:  # the names of the tests' code and of every function and class body inside it
        code = stack.pop()
        used.update(code.co_names)
        stack.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    wanted = {entry_point} | (used - set(prompt_namespace) - set(dir(builtins)))
    return {n for n in names if isinstance(n, str) and n in wanted and n.isidentifier()
            and not keyword.iskeyword(n) and not n.startswith("__") and n not in dir(builtins)}


def test(prompt: str, tests: str, entry_point: str, token: str, report_fd: int, requests: int,
         responses: int) -> None:
    """Run the tests against the solution served by the other process; the token if check(...) returns."""
    hello = receive(responses)
    try:
        if hello is None or "load_error" in hello:
            raise RuntimeError("the solution did not load: " + (hello or {}).get("load_error", "its process ended"))
        namespace = {"__name__": "__main__"}
        try:  # the problem's own helpers (the prompt's functions) run here, out of the solution's reach
            exec(compile(prompt, "prompt.py", "exec"), namespace)
        except Exception:  # noqa: BLE001 - a prompt that does not run alone: the solution serves them all
            namespace = {"__name__": "__main__"}
        code = compile(tests, "tests.py", "exec")
        for name in solution_names_to_call(hello["names"], entry_point, code, namespace):
            namespace[name] = SolutionFunction(name, requests, responses)
        if not isinstance(namespace.get(entry_point), SolutionFunction):
            raise NameError(f"the solution defines no function {entry_point!r}")
        exec(code, namespace)
        exec(compile(f"check({entry_point})", "tests.py", "exec"), namespace)
    except BaseException as e:  # noqa: BLE001 - a failed assertion, a call that raised, anything
        os.write(report_fd, f"raised {type(e).__name__}: {e}"[:300].replace("\n", " ").encode() + b"\n")
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os.write(report_fd, (token + "\n").encode())
    os._exit(0)


# --------------------------------------------------------------------------------------------------------
# the second layer: no route from the program to the harness's frames and objects
# --------------------------------------------------------------------------------------------------------
FRAME_ATTRIBUTES = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"}
BLOCKED_EVENTS = {"sys._getframe", "sys._current_frames", "sys.settrace", "sys.setprofile", "gc.get_objects",
                  "gc.get_referrers", "gc.get_referents", "sys.addaudithook"}


def _audit(event: str, args) -> None:
    if (event in BLOCKED_EVENTS or event.startswith("ctypes.")  # every ctypes load, call and raw address
            or (event == "object.__getattr__" and args[1] in FRAME_ATTRIBUTES)
            or (event == "import" and args[0] in ("ctypes", "_ctypes", "gc", "_testcapi", "_xxsubinterpreters"))
            or (event == "open" and isinstance(args[0], str) and args[0].startswith("/proc/")
                and args[0].rstrip("/").endswith(("/mem", "/pagemap")))):
        # ValueError: what the stdlib's own sys._getframe callers (namedtuple, typing, enum) already catch
        raise ValueError(f"{event} is disabled in the sandbox")


def close_routes(guard: bool) -> None:
    """The reliability guard (when asked for), then the audit hook; nothing of the harness can undo them."""
    if guard:
        reliability_guard()
    sys.addaudithook(_audit)


def reliability_guard() -> None:
    """Disable destructive functions, after HumanEval's guard. A speed bump only: the real defences are the
    process boundary, rlimits, namespaces, the private uid and the cleanup in the parent."""
    import builtins
    import posix
    import shutil as shutil_module
    import socket
    import subprocess as subprocess_module

    builtins.exit = builtins.quit = None
    os.environ.clear()
    for module in (os, posix):
        for name in ("kill", "killpg", "system", "putenv", "unsetenv", "remove", "removedirs", "rmdir",
                     "unlink", "rename", "renames", "replace", "truncate", "ftruncate", "fork", "forkpty",
                     "vfork", "setuid", "setgid", "setsid", "setpgid", "chmod", "fchmod", "lchmod",
                     "chown", "fchown", "lchown", "chroot", "fchdir", "link", "symlink", "execv", "execve",
                     "execvp", "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve",
                     "posix_spawn", "posix_spawnp", "popen", "_exit", "abort", "register_at_fork"):
            if hasattr(module, name):
                setattr(module, name, None)
    for name in ("rmtree", "move", "chown"):
        setattr(shutil_module, name, None)
    subprocess_module.Popen = subprocess_module.run = subprocess_module.call = None
    socket.socket = socket.create_connection = socket.socketpair = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter", "ctypes", "multiprocessing"):
        sys.modules[name] = None


# --------------------------------------------------------------------------------------------------------
# the OS layers (root on Linux)
# --------------------------------------------------------------------------------------------------------
def _libc():
    import ctypes

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


def namespaces() -> list[str]:
    """New network, IPC, PID (for the next fork) and mount namespaces; each skipped if the kernel refuses."""
    if not sys.platform.startswith("linux"):
        return []
    _, libc = _libc()
    done = [name for flag, name in ((CLONE_NEWNET, "netns"), (CLONE_NEWIPC, "ipcns"), (CLONE_NEWPID, "pidns"))
            if libc.unshare(flag) == 0]
    if libc.unshare(CLONE_NEWNS) == 0:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
        done.append("mountns")
    return done


def interpreter_paths() -> list[str]:
    """What the interpreter needs after the jail closes: its prefix (stdlib, lib-dynload) and the shared
    libraries' folders. Folders that are symbolic links on the host come back as the same links."""
    paths = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    for lib in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib"):
        if os.path.isdir(lib) and not os.path.islink(lib):
            paths.add(lib)
    return sorted(p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths))


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
        _mount(None, root + path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
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
    import platform

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
    import math
    import resource

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
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def main(config: dict) -> None:
    """Set up the layers as root, drop to the private uid, then play the role.

    With a PID namespace the role runs in a forked child that is the namespace's init: when it dies the
    kernel kills and reaps everything it started, so no orphan or zombie outlives the sandbox. This process
    only waits for it and passes its exit status on.
    """
    token = sys.stdin.readline().strip()
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # no stdin: a program waiting for input must not hang
    report_fd = config["report_fd"]
    try:
        with open(os.path.join(config["workdir"], PROGRAM_FILE), encoding="utf-8", errors="surrogatepass") as f:
            source = f.read()
        layers = join_cgroups(config.get("cgroups", []))
        layers += namespaces() if config["uid"] is not None else []
        if "pidns" in layers:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            pid = os.fork()
            if pid:
                wait_and_exit_like(pid)
        if "mountns" in layers and "pidns" in layers:
            layers += build_root(config["workdir"], config["disk_mb"], config["uid"], source)
        layers += limits_and_uid(config, "fsview" in layers)
        if config["uid"] is not None:
            layers += no_user_namespaces()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which marks the result "error"
        os.write(report_fd, f"setup-error {type(e).__name__}: {e}\n".encode())
        os._exit(3)
    os.write(report_fd, ("ready " + " ".join([*layers, "audit"]) + "\n").encode())
    role = config["role"]
    if role == "program":
        run_program(source, token, report_fd, config["guard"])
    elif role == "serve":
        serve(source, config["requests"], config["responses"], config["guard"])
    else:
        test(config["prompt"], source, config["entry_point"], token, report_fd, config["requests"],
             config["responses"])


if __name__ == "__main__":
    import ast

    main(ast.literal_eval(sys.argv[1]))
