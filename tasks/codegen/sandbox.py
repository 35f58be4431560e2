"""Run model-written Python in a throwaway process that cannot hurt the machine, and say whether it passed.

Generated code is untrusted: it may loop forever, fork-bomb, allocate 10 GB, delete files, open sockets,
read secrets or call sys.exit(0) before its tests run. Each program gets layered defences, none trusted
alone:

* a fresh `python -I` interpreter per program, in its own session (process group), stdin closed, a
  minimal environment (no parent secrets), and a fresh temporary working directory removed afterwards;
* a wall-clock timeout, after which the whole process group and everything running under the program's
  private uid is SIGKILLed (a fork bomb's children are found even if they left the group);
* rlimits: CPU time, address space (memory), file size (also caps the captured stdout/stderr, which go
  to files, so a flood cannot exhaust the parent's memory), open files, processes, no core dumps;
* where the OS allows it (Linux, as root): new network and mount namespaces (no network at all; a
  private /tmp, /var/tmp and /dev/shm that are the temp dir) and a private unprivileged uid, so file
  permissions protect everything outside the temp dir and RLIMIT_NPROC (ignored for root) is enforced;
* HumanEval's `reliability_guard` in spirit: destructive functions (os.kill, os.system, os.remove,
  shutil.rmtree, subprocess.Popen, os.fork, socket, exit/quit, ...) replaced by None inside the child;
* "passed" only when the bootstrap writes a per-run random token to a private pipe after the program
  returned normally; exiting early (sys.exit(0), os._exit(0)) therefore counts as failed.

The isolation is set up by this file run as a script in the child (`_child_main`), after exec, instead of
in a `preexec_fn`: the parent evaluates with threads, and Python warns that preexec_fn may deadlock then.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

PROGRAM_FILE = "program.py"
_UID_RANGE = (1 << 20, 1 << 21)  # private uids: unlikely to own anything or to collide across evaluators
_uids_in_use: set[int] = set()
_uid_lock = threading.Lock()


@dataclass
class Result:
    """The outcome of one program: status is passed, failed, timeout or error (the sandbox itself failed)."""

    status: str
    exit_code: int | None = None
    stdout: str = ""  # the last `output_cap` bytes
    stderr: str = ""
    wall_s: float = 0.0
    reason: str = ""
    isolation: tuple[str, ...] = field(default_factory=tuple)  # the defences the child confirmed

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(source: str, timeout: float = 5.0, memory_mb: int = 512, *, file_mb: int = 16,
                max_procs: int = 16, guard: bool = True, output_cap: int = 4096) -> Result:
    """Run `source` in a sandboxed child process; "passed" means it ran to its end without an exception.

    `guard=False` leaves out the reliability guard (the tests use it to show the other defences hold alone).
    """
    workdir = tempfile.mkdtemp(prefix="gptsuite-sandbox-")
    uid = _lease_uid() if os.geteuid() == 0 else None
    token = secrets.token_hex(16)
    report_r, report_w = os.pipe()
    start = time.monotonic()
    try:
        with open(os.path.join(workdir, PROGRAM_FILE), "w", encoding="utf-8") as f:
            f.write(source)
        if uid is not None:
            for path in (workdir, os.path.join(workdir, PROGRAM_FILE)):
                os.chown(path, uid, uid)
        config = {"workdir": workdir, "uid": uid, "timeout": timeout, "memory_mb": memory_mb,
                  "file_mb": file_mb, "max_procs": max_procs, "guard": guard, "report_fd": report_w}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", os.path.abspath(__file__), repr(config)],
                    stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=workdir, env=_minimal_env(),
                    start_new_session=True, pass_fds=(report_w,), close_fds=True)
            except OSError as e:
                return Result("error", reason=f"could not start the sandbox: {e}")
            finally:
                os.close(report_w)
            try:
                proc.stdin.write(token.encode() + b"\n")
                proc.stdin.close()
            except OSError:
                pass  # the child died before reading its token: reported as failed below
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_everything(proc, uid)
                proc.wait()
            wall = time.monotonic() - start
            report = _read_report(report_r)
            return _classify(proc.returncode, timed_out, token, report, _tail(out, output_cap),
                             _tail(err, output_cap), wall, timeout)
    finally:
        os.close(report_r)
        shutil.rmtree(workdir, ignore_errors=True)
        if uid is not None:
            with _uid_lock:
                _uids_in_use.discard(uid)


def build_program(solution: str, test_code: str, entry_point: str) -> str:
    """The HumanEval program: the prompt and completion, then the tests, then `check(entry_point)`."""
    return f"{solution}\n{test_code}\ncheck({entry_point})\n"


def check_program(solution: str, test_code: str, entry_point: str, timeout: float = 3.0, **kwargs) -> Result:
    """Run HumanEval-style tests on `solution` (prompt + completion). Bad samples come back as failed results.

    Code that does not compile never reaches a process; a problem without tests is an error, never a pass.
    """
    if not test_code.strip():
        return Result("error", reason="the problem has no tests: nothing to check the completion against")
    program = build_program(solution, test_code, entry_point)
    try:
        compile(program, PROGRAM_FILE, "exec")
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes in the source
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
        msg = e.msg if isinstance(e, SyntaxError) else str(e)
        return Result("failed", reason=f"the completion is not valid Python: {msg}{where}")
    return run_program(program, timeout=timeout, **kwargs)


def run_many(programs: Iterable[str | Mapping], workers: int | None = None, progress: bool = False,
             **kwargs) -> list[Result]:
    """Run many programs on `workers` threads (default: every core), results in input order.

    Each item is a source string (run_program) or a mapping of check_program arguments. A program that
    breaks the harness itself becomes an "error" result; it never stops the evaluation.
    """
    items = list(programs)

    def one(item: str | Mapping) -> Result:
        try:
            if isinstance(item, str):
                return run_program(item, **kwargs)
            return check_program(**{**kwargs, **item})
        except Exception as e:  # noqa: BLE001 - one bad row never kills an evaluation
            return Result("error", reason=f"sandbox failure: {type(e).__name__}: {e}")

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(one, items)
        if progress:
            from tqdm.auto import tqdm
            results = tqdm(results, total=len(items), desc="sandbox", unit="program")
        return list(results)


# ---------------------------------------------------------------------------------------------- parent side


def _lease_uid() -> int:
    """A uid no other running sandbox uses, so killing "everything of this uid" hits only this program."""
    with _uid_lock:
        while True:
            uid = secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0]) + _UID_RANGE[0]
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _minimal_env() -> dict[str, str]:
    """Nothing from the parent's environment: API keys and tokens there must not reach generated code."""
    return {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}


def processes_of(pgid: int | None = None, uid: int | None = None) -> list[int]:
    """Live (non-zombie) pids in process group `pgid` or with real uid `uid`, from /proc (Linux)."""
    pids = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as f:
                real_uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
        state, group = fields[0], int(fields[2])
        if state not in "ZX" and ((pgid is not None and group == pgid) or (uid is not None and real_uid == uid)):
            pids.append(int(name))
    return pids


def _kill_everything(proc: subprocess.Popen, uid: int | None) -> None:
    """SIGKILL everything of the program: its private uid first (the PID namespace's init among them, whose
    death takes the namespace down and lets the waiting bootstrap reap it: no zombie is left to init), then
    the process group, then anything that is still alive by group or uid (setsid escapes, fork bombs)."""
    if uid is not None:
        _kill_pids(processes_of(uid=uid))
        try:
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


def _kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _read_report(fd: int) -> str:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096).decode("ascii", "replace")
    except BlockingIOError:
        return ""


def _tail(f, cap: int) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - cap))
    text = f.read().decode("utf-8", "replace")
    return ("[...]" if size > cap else "") + text


_SIGNALS = {signal.SIGXCPU: "CPU-time limit", signal.SIGXFSZ: "file-size limit (output flood or big file)",
            signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault"}


def _classify(code: int, timed_out: bool, token: str, report: str, out: str, err: str, wall: float,
              timeout: float) -> Result:
    lines = report.splitlines()
    isolation = tuple(lines[0].split()[1:]) if lines and lines[0].startswith("ready") else ()
    result = Result("failed", code, out, err, round(wall, 3), isolation=isolation)
    if timed_out:
        result.status, result.reason = "timeout", f"still running after the {timeout:g} s wall-clock limit"
    elif lines and lines[0].startswith("setup-error"):
        result.status, result.reason = "error", f"sandbox set-up failed: {lines[0][12:]}"
    elif token in lines[1:] and code == 0:
        result.status = "passed"
    elif raised := [line[7:] for line in lines if line.startswith("raised ")]:
        result.reason = raised[-1]
    elif code < 0:
        sig = signal.Signals(-code)
        result.reason = f"killed by {sig.name}: {_SIGNALS.get(sig, 'signal')}"
    elif code == 0:
        result.reason = "exited before the program finished (sys.exit / os._exit before the tests ran?)"
    else:
        result.reason = f"exit code {code}"
    return result


# ----------------------------------------------------------------------------------------------- child side


def _child_main(config: dict) -> None:
    """Set up the defences as root, drop to the private uid, run the program, report the token if it ended.

    With a PID namespace the program runs in a forked child that is the namespace's init: when it dies the
    kernel kills and reaps everything it started, so no orphan or zombie outlives the sandbox. This process
    only waits for it and passes its exit status on.
    """
    token = sys.stdin.readline().strip()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # no stdin: a program waiting for input must not hang until the timeout
    report_fd = config["report_fd"]
    try:
        isolation = _namespaces(config["workdir"]) if config["uid"] is not None else []
        if "pidns" in isolation:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            pid = os.fork()
            if pid:
                _wait_and_exit_like(pid)
            _mount_proc()
        isolation += _limits_and_uid(config, isolation)
        with open(PROGRAM_FILE, encoding="utf-8") as f:
            code = compile(f.read(), PROGRAM_FILE, "exec")
    except Exception as e:  # noqa: BLE001 - reported to the parent, which marks the result "error"
        os.write(report_fd, f"setup-error {type(e).__name__}: {e}\n".encode())
        os._exit(3)
    os.write(report_fd, ("ready " + " ".join(isolation) + "\n").encode())
    _run(code, token, report_fd, config["guard"])


def _run(code, token: str, report_fd: int, guard: bool) -> None:
    """Execute the program; the token goes to the report pipe only if it returned normally."""
    import traceback

    write, exit_now = os.write, os._exit  # kept before the guard removes them
    if guard:
        reliability_guard()
    try:
        exec(code, {"__name__": "__main__", "__file__": PROGRAM_FILE, "__builtins__": __builtins__})
        sys.stdout.flush()
    except BaseException as e:  # noqa: BLE001 - SystemExit included: exiting early is not passing
        write(report_fd, f"raised {type(e).__name__}: {e}"[:300].replace("\n", " ").encode() + b"\n")
        traceback.print_exc()
        sys.stderr.flush()
        exit_now(1)
    write(report_fd, (token + "\n").encode())
    exit_now(0)


def _wait_and_exit_like(pid: int) -> None:
    """Exit with the program's status, re-raising its fatal signal so the parent sees the same returncode."""
    status = os.waitpid(pid, 0)[1]
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _mount_proc() -> None:
    """A /proc of the new PID namespace: the program sees only its own processes."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).mount(b"proc", b"/proc", b"proc", 0, None)


def _limits_and_uid(config: dict, isolation: list[str]) -> list[str]:
    """rlimits and the uid drop; returns the names of the defences that took effect."""
    import math
    import resource

    done = []
    if "mountns" in isolation:
        os.chdir("/tmp")  # the temp dir, mounted over /tmp
    cpu = math.ceil(config["timeout"]) + 1
    mib = 1 << 20
    limits = {"RLIMIT_CPU": (cpu, cpu + 1), "RLIMIT_AS": (config["memory_mb"] * mib,) * 2,
              "RLIMIT_FSIZE": (config["file_mb"] * mib,) * 2, "RLIMIT_CORE": (0, 0),
              "RLIMIT_NOFILE": (256, 256), "RLIMIT_NPROC": (config["max_procs"],) * 2}
    for name, value in limits.items():
        if hasattr(resource, name):
            resource.setrlimit(getattr(resource, name), value)
            done.append(name.removeprefix("RLIMIT_").lower())
    uid = config["uid"]
    if uid is not None and _interpreter_reachable(isolation):
        _prctl_no_new_privs()
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        done.append(f"uid={uid}")
    return done


def _namespaces(workdir: str) -> list[str]:
    """No network (an empty network namespace) and a private /tmp; each skipped if the kernel refuses."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if not sys.platform.startswith("linux"):
        return []
    done = []
    if libc.unshare(0x40000000) == 0:  # CLONE_NEWNET: only a down loopback, so connect() fails
        done.append("netns")
    if libc.unshare(0x20000000) == 0:  # CLONE_NEWPID: applies to the next fork
        done.append("pidns")
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        return done
    ms_bind, ms_rec, ms_private, ms_move = 4096, 16384, 1 << 18, 8192

    def mount(src, target, fstype, flags, data=None):
        if libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(), flags,
                      data and data.encode()) != 0:
            raise OSError(ctypes.get_errno(), f"mount {src} on {target}: {os.strerror(ctypes.get_errno())}")

    mount(None, "/", None, ms_rec | ms_private)  # nothing below propagates back to the host
    # The unprivileged uid must still read the interpreter: if it lives under a directory closed to others
    # (pyenv in /root, mode 0700), hide that directory behind a tmpfs and mount just the interpreter back.
    blocked = {}
    for prefix in {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)}:
        closed = _first_closed_ancestor(prefix)
        if closed:
            blocked.setdefault(closed, []).append(prefix)
    stashes = []
    for i, prefix in enumerate(p for prefixes in blocked.values() for p in prefixes):
        stash = os.path.join(workdir, f".interpreter{i}")
        os.mkdir(stash)
        mount(prefix, stash, None, ms_bind | ms_rec)
        stashes.append((stash, prefix))
    for closed in blocked:
        mount("tmpfs", closed, "tmpfs", 0, "mode=0755,size=1m")
    for stash, prefix in stashes:
        os.makedirs(prefix, mode=0o755, exist_ok=True)
        mount(stash, prefix, None, ms_move)
        os.rmdir(stash)
    for shared_tmp in ("/var/tmp", "/dev/shm", "/tmp"):  # /tmp last: it hides the workdir's own path
        if os.path.isdir(shared_tmp):
            mount(workdir, shared_tmp, None, ms_bind)
    return done + ["mountns"]


def _first_closed_ancestor(path: str) -> str | None:
    """The outermost directory on the way to `path` that others may not enter (mode without o+x)."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _interpreter_reachable(isolation: list[str]) -> bool:
    """Dropping the uid is safe only if the interpreter's files stay readable (else keep root + the rest)."""
    return "mountns" in isolation or not any(_first_closed_ancestor(os.path.realpath(p))
                                        for p in (sys.base_prefix, sys.prefix))


def _prctl_no_new_privs() -> None:
    """No setuid binaries: even an exec that slips past the guard cannot regain root."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS


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


if __name__ == "__main__":
    import ast

    _child_main(ast.literal_eval(sys.argv[1]))
