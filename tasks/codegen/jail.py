"""The child side of the sandbox (tasks.codegen.sandbox): run as `python -I jail.py CONFIG`, stdlib only.

As root on Linux the child builds its jail (tasks/codegen/isolation.py) before any untrusted code runs, and
reports which layers took effect (the first line on its report pipe, "ready <layers>"):

    userns    (an ordinary user) a user namespace holding the capabilities to build the layers below; every
              capability is dropped before the sample runs (`nocaps`)
    cgroup    (root) the sandbox's memory and process count limited together (memory and pids controllers)
    netns     an empty network namespace: no network, no abstract Unix sockets of the host
    utsns     its own host name ("sandbox")
    ipcns     its own SysV IPC and POSIX message queues: nothing it creates outlives it
    pidns     its own PID namespace: it sees only its processes, and they all die with it
    mountns   its own mounts, then `fsview`: a new root holding only the interpreter and its libraries
              (read-only), /dev/null, /dev/zero, /dev/urandom, a private /proc and a writable /tmp
    tmpfs=N   that /tmp is a tmpfs of N MiB: the disk quota (and nothing written there reaches the host)
    cpu, as, fsize, core, nofile, nproc   rlimits
    uid=N     (root) a private unprivileged uid; no_new_privs (no setuid binary regains root)
    nocaps    (user namespace) no capability left, no_new_privs
    seccomp   a filter refusing new user namespaces (unshare / clone with CLONE_NEWUSER; clone3 answers
              ENOSYS so libc falls back to clone), kernel keyrings, fallocate, ptrace and cross-process
              memory, bpf, perf, userfaultfd, io_uring, AF_VSOCK sockets and foreign syscall ABIs
    audit     audit hooks on the routes from the program to the harness's frames and objects
              (sys._getframe, tracebacks' and generators' frames, gc, tracing, ctypes): a speed bump, not a
              wall (a signal handler's frame is not audited; a fresh interpreter has no hooks)

Without netns, pidns and fsview (tasks/codegen/isolation.py REQUIRED_ISOLATION) the jail refuses to run the sample
("refused <missing layers>") unless the caller opted in (`unisolated`).

Three roles:
    program   run a program; its exit status is the verdict, judged by the parent: no token or report pipe
              is left in this process when the program's first line runs
    serve     run a solution, then answer calls to its functions, arguments and results as plain data
    test      run the tests in a process of their own, the solution's functions replaced by proxies that
              call the serving process: the verdict (the token) never shares a process with model code, and
              a result can only be plain data (no object whose __eq__ is always True crosses over)
"""

from __future__ import annotations

import builtins
import json
import keyword
import os
import posix
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import traceback

if __package__:  # imported as tasks.codegen.jail
    from tasks.codegen import isolation
else:  # run as the sandbox's script: `python -I` leaves this folder off sys.path, so add it for one import
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import isolation

    del sys.path[0]

PROGRAM_FILE, PROMPT_FILE = isolation.PROGRAM_FILE, isolation.PROMPT_FILE
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
def compile_sample(source: str, what: str):
    """Compile under the jail's limits (a pathological source costs the sample's time and memory, never the
    evaluator's); -> the code, or raises SampleUnreadable with the reason."""
    try:
        return compile(source, PROGRAM_FILE, "exec", dont_inherit=True)
    except SyntaxError as e:
        where = f" (line {e.lineno})" if e.lineno else ""
        raise SampleUnreadable(f"the {what} is not valid Python: {e.msg}{where}") from None
    except (ValueError, RecursionError, MemoryError) as e:  # "1+1+..." nested too deep to compile
        raise SampleUnreadable(f"the {what} cannot be compiled: {type(e).__name__}: "
                               f"{str(e)[:200] or 'too deeply nested'}") from None


class SampleUnreadable(Exception):
    """The sample does not compile: exit status UNREADABLE, the reason on the report pipe (a plain run) or the
    responses pipe (a solution)."""


UNREADABLE = 2


def run_program(code, guard: bool) -> None:
    """Execute the compiled program. Its exit status is the verdict, read by the parent: 0 when it ran to its
    end, 1 when it raised (SystemExit included: exiting early is not passing). No token or report pipe is left
    in this process. A program can still choose to end early with status 0 (an exit function of its own, or
    this frame's, reached from a signal handler's frame): a plain run cannot tell that from its end, and
    check_program can."""

    exit_now, block = os._exit, signal.pthread_sigmask  # kept before the guard and the program replace them
    everything = signal.valid_signals()
    close_routes(guard)
    try:
        exec(code, {"__name__": "__main__", "__file__": PROGRAM_FILE, "__builtins__": __builtins__})
    except BaseException as e:  # noqa: BLE001 - SystemExit included
        block(signal.SIG_BLOCK, everything)  # no handler of the program's can turn this into a normal end
        try:
            _flush(sys.stdout)  # what a failing program printed is kept
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
            _flush(sys.stderr)
        finally:
            exit_now(1)
    _flush(sys.stdout)
    exit_now(0)


def _read(folder: str, name: str) -> str:
    """A text the parent wrote into the work folder ("" where it wrote none)."""
    try:
        with open(os.path.join(folder, name), encoding="utf-8", errors="surrogatepass") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _flush(stream) -> None:
    try:
        stream.flush()
    except Exception:  # noqa: BLE001 - a sample that closed or broke its own stream
        pass


def serve(source: str, requests: int, responses: int, guard: bool) -> None:
    """Run the solution, send the names of its functions, then answer {"call": name, "args", "kwargs"}
    with {"value": plain} or {"raised": [type, message]} until the tests hang up."""
    write_message, read_message, exit_now = send, receive, os._exit
    try:
        code = compile_sample(source, "completion")
    except SampleUnreadable as e:
        write_message(responses, {"load_error": str(e)})
        exit_now(UNREADABLE)
    close_routes(guard)
    namespace = {"__name__": "__main__", "__file__": PROGRAM_FILE, "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except BaseException as e:  # noqa: BLE001 - the solution failed to load: every call fails
        _flush(sys.stdout)
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
            error = (hello or {}).get("load_error", "its process ended")
            raise RuntimeError(error if "not valid Python" in error or "cannot be compiled" in error
                               else f"the solution did not load: {error}")
        namespace = {"__name__": "__main__"}
        try:  # the problem's own helpers (the prompt's functions) run here, out of the solution's reach
            exec(compile(prompt, "prompt.py", "exec"), namespace)
        except Exception:  # noqa: BLE001 - a prompt that does not run alone: the solution serves them all
            namespace = {"__name__": "__main__"}
        code = compile(tests, "tests.py", "exec", dont_inherit=True)
        for name in solution_names_to_call(hello["names"], entry_point, code, namespace):
            namespace[name] = SolutionFunction(name, requests, responses)
        if not isinstance(namespace.get(entry_point), SolutionFunction):
            raise NameError(f"the solution defines no function {entry_point!r}")
        exec(code, namespace)
        exec(compile(f"check({entry_point})", "tests.py", "exec"), namespace)
    except BaseException as e:  # noqa: BLE001 - a failed assertion, a call that raised, anything
        # one JSON line (ASCII, control characters escaped): the parent reads fields, never free text
        os.write(report_fd, json.dumps(["raised", type(e).__name__, str(e)[:300]]).encode() + b"\n")

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os.write(report_fd, (token + "\n").encode())
    os._exit(0)


# --------------------------------------------------------------------------------------------------------
# the second layer: no route from the program to the harness's frames and objects
# --------------------------------------------------------------------------------------------------------
FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})
BLOCKED_EVENTS = frozenset({"sys._getframe", "sys._current_frames", "sys.settrace", "sys.setprofile",
                            "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.addaudithook"})
BLOCKED_IMPORTS = frozenset({"ctypes", "_ctypes", "gc", "_testcapi", "_xxsubinterpreters"})
CODE_ATTRIBUTES = frozenset({"__code__", "__closure__", "__globals__", "__defaults__", "__kwdefaults__"})


def audit_hook():
    """The hook, built so the program cannot change what it blocks: its sets are frozen and held in its
    closure (not in this module's globals, which `import __main__` reaches), the builtins it calls are bound
    now (the program may replace builtins.isinstance), and rewriting any function's code, closure or globals
    is refused (a hook whose __code__ is replaced lets everything through)."""
    str_type, type_of, disabled = str, type, ValueError
    frames, events, imports, code = FRAME_ATTRIBUTES, BLOCKED_EVENTS, BLOCKED_IMPORTS, CODE_ATTRIBUTES

    def hook(event: str, args) -> None:
        if (event in events or event.startswith("ctypes.")  # every ctypes load, call and raw address
                or (event == "object.__getattr__" and args[1] in frames)
                or (event in ("object.__setattr__", "object.__delattr__") and args[1] in code)
                or (event == "import" and args[0] in imports)
                or (event == "open" and type_of(args[0]) is str_type and args[0].startswith("/proc/")
                    and args[0].rstrip("/").endswith(("/mem", "/pagemap")))):
            # ValueError: what the stdlib's own sys._getframe callers (namedtuple, typing, enum) already catch
            raise disabled(f"{event} is disabled in the sandbox")

    return hook


def close_routes(guard: bool) -> None:
    """The reliability guard (when asked for), then the audit hook; nothing of the harness can undo them."""
    if guard:
        reliability_guard()
    sys.addaudithook(audit_hook())


def reliability_guard() -> None:
    """Disable destructive functions, after HumanEval's guard. A speed bump only: the real defences are the
    process boundary, rlimits, namespaces, the private uid and the cleanup in the parent."""

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
        setattr(shutil, name, None)
    subprocess.Popen = subprocess.run = subprocess.call = None
    socket.socket = socket.create_connection = socket.socketpair = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter", "ctypes", "multiprocessing"):
        sys.modules[name] = None


def main(config: dict) -> None:
    """Set up the layers, drop privileges, then play the role.

    As root: namespaces, cgroups and a private uid. As an ordinary user: the same namespaces inside a new
    user namespace, then every capability dropped. With a PID namespace the role runs in a forked child
    that is the namespace's init: when it dies the kernel kills and reaps everything it started, so no
    orphan or zombie outlives the sandbox. This process only waits for it and passes its exit status on.
    """
    token = sys.stdin.readline().strip() if config["role"] == "test" else ""  # only the tests' process has one
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # no stdin: a program waiting for input must not hang
    os.close(null)
    report_fd = config["report_fd"]
    try:
        source, prompt = (_read(config["workdir"], name) for name in (PROGRAM_FILE, PROMPT_FILE))
        active = isolation.join_cgroups(config.get("cgroups", []))
        if config["os_layers"]:
            active += isolation.namespaces() if config["uid"] is not None else isolation.user_namespace()
            if "userns" in active:
                active += isolation.namespaces()
        if "pidns" in active:

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            pid = os.fork()
            if pid:
                isolation.wait_and_exit_like(pid)
        if "mountns" in active and "pidns" in active:
            active += isolation.build_root(config["workdir"], config["disk_mb"], config["uid"], source)
        active += isolation.limits_and_uid(config, "fsview" in active)
        if "userns" in active:
            active += isolation.drop_capabilities()
        if config["uid"] is not None or "userns" in active:
            active += isolation.no_user_namespaces()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which marks the result "error"
        os.write(report_fd, f"setup-error {type(e).__name__}: {e}\n".encode())
        os._exit(3)
    missing = [name for name in isolation.REQUIRED_ISOLATION if name not in active]
    if missing and not config["unisolated"]:
        os.write(report_fd, ("refused " + " ".join(missing) + "\n").encode())
        os._exit(4)
    os.write(report_fd, ("ready " + " ".join([*active, "audit"]) + "\n").encode())
    role = config["role"]
    if role == "program":  # compiled here, under the limits, so the reason is the jail's and not the program's
        try:
            code = compile_sample(source, "program")
        except SampleUnreadable as e:
            os.write(report_fd, json.dumps(["unreadable", str(e)]).encode() + b"\n")
            os._exit(UNREADABLE)
    if role != "test":  # the tests' process reports its verdict; the others hold no route to the parent
        os.close(report_fd)
    if role == "program":
        run_program(code, config["guard"])
    elif role == "serve":
        serve(source, config["requests"], config["responses"], config["guard"])
    else:
        test(prompt, source, config["entry_point"], token, report_fd, config["requests"], config["responses"])


if __name__ == "__main__":
    import ast

    main(ast.literal_eval(sys.argv[1]))
