"""The child side of the sandbox (tasks.codegen.sandbox): run as `python -I jail.py CONFIG`, stdlib only.

As root on Linux the child builds its jail (tasks/codegen/layers.py) before any untrusted code runs, and
reports which layers took effect (the first line on its report pipe, "ready <layers>"):

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
import struct
import sys

if __package__:  # imported as tasks.codegen.jail
    from tasks.codegen import layers
else:  # run as the sandbox's script: `python -I` leaves this folder off sys.path, so add it for one import
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import layers

    del sys.path[0]

PROGRAM_FILE = layers.PROGRAM_FILE
MiB = 1 << 20
MAX_MESSAGE = 64 * MiB  # one call's arguments or result


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
        active = layers.join_cgroups(config.get("cgroups", []))
        active += layers.namespaces() if config["uid"] is not None else []
        if "pidns" in active:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            pid = os.fork()
            if pid:
                layers.wait_and_exit_like(pid)
        if "mountns" in active and "pidns" in active:
            active += layers.build_root(config["workdir"], config["disk_mb"], config["uid"], source)
        active += layers.limits_and_uid(config, "fsview" in active)
        if config["uid"] is not None:
            active += layers.no_user_namespaces()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which marks the result "error"
        os.write(report_fd, f"setup-error {type(e).__name__}: {e}\n".encode())
        os._exit(3)
    os.write(report_fd, ("ready " + " ".join([*active, "audit"]) + "\n").encode())
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
