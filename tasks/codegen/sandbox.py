"""Run model-written Python in throwaway processes that cannot hurt the machine, and say whether it passed.

Generated code is untrusted: it may loop forever, fork-bomb, allocate 10 GB, delete files, open sockets,
read secrets, exit before its tests run, walk up to the harness's frames to forge a pass, or return an
object whose __eq__ is always True. The defences are layered, none trusted alone:

* a fresh `python -I` interpreter per process, in its own session, stdin closed, a minimal environment
  (no parent secrets), a fresh temporary folder removed afterwards (without recursion, however deep);
* a wall-clock timeout, after which the process group and everything of the process's private uid is
  SIGKILLed (a fork bomb's children are found even if they left the group);
* the jail (tasks/codegen/jail.py, the child side; its OS isolation in isolation.py): rlimits everywhere; as
  root on Linux also a cgroup per process tree (memory and process count for the whole sample, not per
  process), network, IPC, PID and mount namespaces, a root holding only the read-only interpreter and a
  size-limited tmpfs /tmp, a private uid, no_new_privs, and a seccomp filter (no new user namespaces,
  keyrings, fallocate, ptrace, bpf, io_uring, vsock); audit hooks against frame, gc and ctypes use;
  HumanEval's reliability guard as a speed bump. Each result lists the
  layers that took effect (`Result.isolation`); where one is unavailable (not root, not Linux) it is absent.

HumanEval-style checks (`check_program`) run in two jailed processes under two uids: one runs the solution
and serves calls to its functions; the other runs the problem's prompt and tests, calling the solution's
functions through a pipe that carries plain data only. The verdict (a per-run token written when `check`
returns) lives in the tests' process, which never runs model code.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from tasks.codegen.cleanup import kill_everything, lease_uid, make_cgroups, release_uid, remove_cgroup, remove_tree
from tasks.codegen.isolation import PROGRAM_FILE, PROMPT_FILE

JAIL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jail.py")
PYTHON = sys.executable  # the jail is stdlib only: any CPython 3.10+ the sample's uid may run would do


@dataclass
class Result:
    """The outcome of one program: status is passed, failed, timeout or error (the sandbox itself failed)."""

    status: str
    exit_code: int | None = None
    stdout: str = ""  # the last `output_cap` bytes
    stderr: str = ""
    wall_s: float = 0.0
    reason: str = ""
    isolation: tuple[str, ...] = field(default_factory=tuple)  # the layers the (solution's) child confirmed

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class Limits:
    timeout: float = 5.0  # wall-clock seconds (CPU time: the same, rounded up, plus one)
    memory_mb: int = 512  # address space
    file_mb: int = 16  # largest file written (and the captured output)
    disk_mb: int = 64  # all of /tmp together (a tmpfs, where the jail has a mount namespace)
    max_procs: int = 16
    guard: bool = True  # HumanEval's reliability guard (the tests leave it out to show the rest holds)
    output_cap: int = 4096  # bytes of stdout / stderr kept
    max_source_bytes: int = 256 * 1024  # a longer sample fails unread (it would cost the jail time to compile)
    # Run even where the OS gives no isolation (no network, PID and mount namespaces: not Linux, or user
    # namespaces disabled): the sample could then read your files and reach your network. Also set by the
    # environment variable GPTSUITE_SANDBOX_UNISOLATED=1. Off: such a run is refused with an "error".
    unisolated: bool = False
    os_layers: bool = True  # False: the audit layer and rlimits only (the tests show the verdict still holds)


UNISOLATED_ENV = "GPTSUITE_SANDBOX_UNISOLATED"


class IsolationUnavailable(PermissionError):
    """This machine cannot isolate samples and nobody opted in to running them unisolated (an evaluation stops
    with this rather than scoring every sample as failed)."""


def run_program(source: str, timeout: float = 5.0, memory_mb: int = 512, **limits) -> Result:
    """Run `source` in one jailed process; "passed" means it ended with status 0, judged from outside: it ran
    to its end without an exception, or chose to end early with status 0 (os._exit(0)), which a plain run
    cannot tell apart. To check code against tests, use check_program: there no sample can write the verdict.
    Never raises: a bad program is a failed result, a sandbox that could not run it an error."""
    try:
        limit = Limits(timeout, memory_mb, **limits)
        problem = _unsendable(source, "program", limit.max_source_bytes)
        if problem:
            return Result("failed", reason=problem)
        child = _Child("program", source, limit)
        try:
            child.start()
            timed_out = child.wait()
            return child.result(timed_out)
        finally:
            child.close()
    except Exception as e:  # noqa: BLE001 - the harness failed: an error result, never a crash
        return Result("error", reason=f"sandbox failure: {type(e).__name__}: {printable(str(e))}")


def check_program(solution: str, test_code: str, entry_point: str, timeout: float = 3.0, *, prompt: str = "",
                  **limits) -> Result:
    """Run HumanEval-style tests (`def check(candidate)`) on `solution` (prompt + completion); `prompt` (the
    problem's own part of it) also runs beside the tests, so the tests' helper functions never run in the
    solution's process. Every bad sample comes back as a failed result; this function never raises."""
    try:
        if not test_code.strip():
            return Result("error", reason="the problem has no tests: nothing to check the completion against")
        if not entry_point.isidentifier():
            return Result("error", reason=f"the entry point {entry_point!r} is not a Python name")
        limit = Limits(timeout, **limits)
        for text, what in ((solution, "completion"), (test_code, "test code")):
            problem = _unsendable(text, what, limit.max_source_bytes)
            if problem:
                return Result("failed" if what == "completion" else "error", reason=problem)
        if _unsendable(prompt, "prompt", limit.max_source_bytes):
            prompt = ""  # it need not compile alone: where it does not, the solution serves all
        return _run_pair(solution, test_code, entry_point, prompt, limit)
    except Exception as e:  # noqa: BLE001 - the harness failed: an error result, never a crash
        return Result("error", reason=f"sandbox failure: {type(e).__name__}: {printable(str(e))}")


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
            results = tqdm(results, total=len(items), desc="sandbox", unit="program")
        return list(results)


# --------------------------------------------------------------------------------------------------------
# the parent side
# --------------------------------------------------------------------------------------------------------
def _unsendable(source, what: str, max_bytes: int) -> str | None:
    """Why `source` is not even sent to a jail, or None. Cheap checks only (type, size, encoding, null
    bytes): compiling is the jail's job, under its limits, so no sample costs the evaluator time or memory."""
    if not isinstance(source, str):
        return f"the {what} is a {type(source).__name__}, not text"
    if len(source) > max_bytes:  # characters: a lower bound on its UTF-8 bytes, known without encoding it
        return f"the {what} is over {max_bytes} bytes ({len(source)} characters)"
    try:
        size = len(source.encode("utf-8"))
    except UnicodeEncodeError as e:
        return f"the {what} is not valid Unicode text ({e.reason} at character {e.start})"
    if size > max_bytes:
        return f"the {what} is over {max_bytes} bytes ({size})"
    if "\x00" in source:
        return f"the {what} cannot be compiled: it contains null bytes"
    return None


def printable(text: str, limit: int = 300) -> str:
    """Text from a sample, safe to show on one line: every character that is not printable (line breaks, tabs,
    carriage returns, the separators str.splitlines splits on, terminal escapes) written as its escape."""
    text = text[:limit]
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _run_pair(solution: str, tests: str, entry_point: str, prompt: str, limits: Limits) -> Result:
    requests_r, requests_w = os.pipe()
    responses_r, responses_w = os.pipe()
    ends = [requests_r, requests_w, responses_r, responses_w]
    server = _Child("serve", solution, limits, {"requests": requests_r, "responses": responses_w})
    tester = _Child("test", tests, limits, {"requests": requests_w, "responses": responses_r},
                    {"entry_point": entry_point}, {PROMPT_FILE: prompt})
    try:
        server.start()
        tester.start()
        while ends:  # the children hold their ends now (closed once: a number closed twice may be reused)
            os.close(ends.pop())
        timed_out = tester.wait()
        died_first = server.proc.poll() is not None  # before stop(): a kill of ours is no news about the solution
        server.stop()
        result = tester.result(timed_out)
        serving = server.result(False)
        result.stdout = serving.stdout  # what the solution printed
        result.stderr = (serving.stderr + "\n" + result.stderr).strip()
        result.isolation = serving.isolation
        if result.status == "failed" and died_first and (serving.exit_code or 0) < 0:
            result.reason += f" (the solution's process was {serving.reason})"
        return result
    finally:
        while ends:
            os.close(ends.pop())
        server.close()
        tester.close()


class _Child:
    """One jailed process: its temp folder, private uid, report pipe and captured output."""

    def __init__(self, role: str, source: str, limits: Limits, pipes: dict | None = None, extra: dict | None = None,
                 files: dict[str, str] | None = None):
        self.role, self.source, self.limits = role, source, limits
        self.pipes, self.extra = pipes or {}, extra or {}
        self.files = {PROGRAM_FILE: source, **(files or {})}  # texts go in files: a command line has a size limit
        self.workdir = tempfile.mkdtemp(prefix="gptsuite-sandbox-")
        self.uid = lease_uid() if os.geteuid() == 0 else None
        self.token = secrets.token_hex(16)
        self.report_r, self.report_w = os.pipe()
        self.report_w_open = True
        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.proc: subprocess.Popen | None = None
        self.stopped = False
        self.start_time = time.monotonic()
        self.cgroups = make_cgroups(self.token[:12], limits.memory_mb, limits.max_procs) if self.uid else []

    def start(self) -> None:
        paths = [os.path.join(self.workdir, name) for name in self.files]
        for path, text in zip(paths, self.files.values()):
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        if self.uid is not None:  # where the jail has no new root, the program runs in this folder
            for p in (self.workdir, *paths):
                os.chown(p, self.uid, self.uid)
        lim = self.limits
        config = {"role": self.role, "workdir": self.workdir, "uid": self.uid, "timeout": lim.timeout,
                  "memory_mb": lim.memory_mb, "file_mb": lim.file_mb, "disk_mb": lim.disk_mb,
                  "max_procs": lim.max_procs, "guard": lim.guard, "report_fd": self.report_w,
                  "cgroups": self.cgroups, "os_layers": lim.os_layers,
                  "unisolated": lim.unisolated or os.environ.get(UNISOLATED_ENV, "") == "1",
                  **self.pipes, **self.extra}
        self.start_time = time.monotonic()
        out, err = _own_description(self.out), _own_description(self.err)
        try:
            self.proc = subprocess.Popen(
                [PYTHON, "-I", JAIL, repr(config)], stdin=subprocess.PIPE, stdout=out,
                stderr=err, cwd=self.workdir, env=_minimal_env(), start_new_session=True,
                pass_fds=(self.report_w, *self.pipes.values()), close_fds=True)
        finally:
            os.close(self.report_w)
            self.report_w_open = False
            for fd in {out, err} - {self.out.fileno(), self.err.fileno()}:
                os.close(fd)
        try:  # only the tests' process reads a token: the others hold no secret
            self.proc.stdin.write((self.token if self.role == "test" else "").encode() + b"\n")
            self.proc.stdin.close()
        except OSError:
            pass  # the child died before reading its token: reported as failed

    def wait(self) -> bool:
        """Wait for the child up to the timeout, then end everything of it; True when it timed out."""
        try:
            self.proc.wait(timeout=self.limits.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        self.stop()
        return timed_out

    def stop(self) -> None:
        """End everything of the child, once (each pass scans /proc)."""
        if self.proc is not None and not self.stopped:
            kill_everything(self.proc, self.uid)
            self.proc.wait()
            self.stopped = True

    def result(self, timed_out: bool) -> Result:
        if self.proc is None:
            return Result("error", reason="the sandbox did not start")
        result = _classify(self.role, self.proc.returncode, timed_out, self.token, _read_report(self.report_r),
                           _tail(self.out, self.limits.output_cap), _tail(self.err, self.limits.output_cap),
                           time.monotonic() - self.start_time, self.limits.timeout)
        full = [name for name, f in (("stdout", self.out), ("stderr", self.err))
                if os.fstat(f.fileno()).st_size >= self.limits.file_mb * (1 << 20)]
        if result.status == "failed" and result.exit_code == 1 and full:  # its own error could not be written
            result.reason = (f"raised OSError: File too large ({' and '.join(full)} reached the "
                             f"{self.limits.file_mb} MiB file-size limit)")
        return result

    def close(self) -> None:
        self.stop()
        os.close(self.report_r)
        if self.report_w_open:
            os.close(self.report_w)
        self.out.close()
        self.err.close()
        remove_tree(self.workdir)
        for folder in self.cgroups:
            remove_cgroup(folder)
        if self.uid is not None:
            release_uid(self.uid)


def _minimal_env() -> dict[str, str]:
    """Nothing from the parent's environment: API keys and tokens there must not reach generated code."""
    return {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}


def _read_report(fd: int) -> str:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096).decode("ascii", "replace")
    except BlockingIOError:
        return ""


def _own_description(f) -> int:
    """A file descriptor of the same file with a description of its own, for the child: flags it sets
    (O_DIRECT, O_NONBLOCK) then stay on its side. Where /proc is missing, the shared one."""
    try:
        return os.open(f"/proc/self/fd/{f.fileno()}", os.O_WRONLY)
    except OSError:
        return f.fileno()


def _tail(f, cap: int) -> str:
    """The last `cap` bytes the child wrote. A hole it made by seeking past the end (a sparse file) was never
    written: it is skipped, not read as NUL bytes."""
    try:
        size = f.seek(0, os.SEEK_END)
        pieces, need = [], cap
        for i, (start, end) in enumerate(reversed(_written_regions(f.fileno(), size))):
            take = min(need + PAGE, end - start)
            f.seek(end - take)
            chunk = f.read(take)
            if i:  # a region before a hole ends in the unwritten rest of its last page: zeros nobody wrote
                chunk = chunk.rstrip(b"\0")
            chunk = chunk[-need:]
            pieces.append(chunk)
            need -= len(chunk)
            if need <= 0:
                break
        data = b"".join(reversed(pieces))
    except OSError as e:
        return f"[output unreadable: {e}]"
    return ("[...]" if size > len(data) else "") + data.decode("utf-8", "replace")


PAGE = 4096


def _written_regions(fd: int, size: int) -> list[tuple[int, int]]:
    """The file's data regions [(start, end)], holes left out; the whole file where holes are not reported.
    At most RLIMIT_FSIZE / block size regions: one pass."""
    if not hasattr(os, "SEEK_HOLE"):
        return [(0, size)]
    regions, position = [], 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError:  # ENXIO: no data past position
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        regions.append((start, end))
        position = end
    return regions


_SIGNALS = {signal.SIGXCPU: "CPU-time limit", signal.SIGXFSZ: "file-size limit (output flood or big file)",
            signal.SIGKILL: "killed (a limit: memory, processes, CPU time; or from outside)",
            signal.SIGSEGV: "segmentation fault", signal.SIGSYS: "a forbidden system call (seccomp)"}
SETUP_ERROR, REFUSED, UNREADABLE = 3, 4, 2  # the jail's own exit statuses (tasks/codegen/jail.py)


def signal_reason(number: int) -> str:
    """"killed by SIGXCPU: CPU-time limit"; any number, real-time signals and unknown ones included."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return f"killed by {name}: {_SIGNALS.get(number, 'signal')}"


def _classify(role: str, code: int | None, timed_out: bool, token: str, report: str, out: str, err: str,
              wall: float, timeout: float) -> Result:
    """The verdict, from what the parent saw: the exit status, the report pipe's lines (the first written by
    the jail before any sample ran; the tests' verdict after it) and, for a plain run, stderr's last line.
    Every reason is built here from those fields, the sample's text escaped (printable)."""
    lines = report.split("\n")  # "\n" only: str.splitlines would also split on characters a sample can send
    first = lines[0]
    isolation = tuple(first.split()[1:]) if first.startswith("ready ") else ()
    result = Result("failed", code, out, err, round(wall, 3), isolation=isolation)
    if timed_out:
        result.status, result.reason = "timeout", f"still running after the {timeout:g} s wall-clock limit"
    elif first.startswith("setup-error "):
        result.status, result.reason = "error", f"sandbox set-up failed: {printable(first[12:])}"
    elif first.startswith("refused "):
        result.status = "error"
        result.reason = (f"refused: this machine gives the sandbox no {', '.join(first.split()[1:])} isolation, "
                         f"so the code could read your files, reach your network or see your processes; run it "
                         f"anyway only by choice: {UNISOLATED_ENV}=1 or unisolated=True")
    elif code is not None and code < 0:
        result.reason = signal_reason(-code)
    elif role == "program":  # the exit status is the verdict; the rest is what the program itself wrote
        last = next((line for line in reversed(err.split("\n")) if line.strip()), "")
        unreadable = [_unreadable(line) for line in lines[1:] if line.startswith('["unreadable"')]
        if code == 0:
            result.status = "passed"
        elif code == UNREADABLE and unreadable:
            result.reason = unreadable[0]
        else:
            result.reason = f"exit code {code}" + (f"; its stderr ends: {printable(last)}" if last else "")
    elif token in lines[1:] and code == 0:
        result.status = "passed"
    elif raised := [_raised(line) for line in lines[1:] if line.startswith("[")]:
        result.reason = raised[-1]
    elif code == 0:
        result.reason = "exited before the program finished (sys.exit / os._exit before the tests ran?)"
    else:
        result.reason = f"exit code {code}"
    return result


def _unreadable(line: str) -> str:
    """The jail's reason a program did not compile, from its report line ["unreadable", reason] (written before
    any of the program ran)."""

    try:
        return printable(str(json.loads(line)[1]))
    except (ValueError, TypeError, IndexError):
        return f"unreadable report: {printable(line)}"


def _raised(line: str) -> str:
    """"raised Type: message" from the tests' JSON report line ["raised", type, message]."""

    try:
        _, kind, message = json.loads(line)
        return f"raised {printable(str(kind), 80)}: {printable(str(message))}"
    except (ValueError, TypeError):
        return f"unreadable report: {printable(line)}"
