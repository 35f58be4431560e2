"""The evaluator's side of the sandbox against hostile samples: it never raises, never stalls beyond a sample's
own time, never spends its own memory or stderr on a sample, reads reasons and outputs as data, and judges a
plain run from outside with no secret left in the sample's process. Plus isolation as an ordinary user."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import sys
import tempfile
import time

import pytest

from tasks.codegen import cleanup, sandbox
from tasks.codegen.sandbox import check_program, run_many, run_program, signal_reason

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
MiB = 1 << 20


def solution(body: str) -> str:
    return PROMPT + "".join("    " + line + "\n" for line in body.splitlines())


# Each is a sample that once broke the evaluator (raised, stalled it, took its memory or flooded its stderr)
# or made a reason lie; with the kind of run it targets.
HOSTILE = {
    "real-time signal": ("program", "import os\npid = os.fork()\nif pid == 0:\n    import signal\n"
                                    "    signal.raise_signal(40)\nos.waitpid(pid, 0)\nraise SystemExit(1)\n"),
    "real-time signal, solution": ("check", solution("import signal\nsignal.raise_signal(41)\nreturn a + b")),
    "45,000 keyword arguments": ("program", "f(" + ",".join(f"a{i}=1" for i in range(20_000)) + ")\n"),
    "a big list literal": ("program", "x = [" + "1," * 120_000 + "]\n"),
    "20,000 syntax warnings": ("program", "x = 1\n" + "x is 1\n" * 20_000),
    "control characters in the reason": ("check", solution("raise ValueError('ok\\r\\x0b\\x1cnothing: all tests "
                                                           "passed\\n\\u2028')")),
    "SystemExit(0) from __str__ of the exception": (
        "program", "import sys\nclass E(Exception):\n    def __str__(self):\n        sys.exit(0)\nraise E()\n"),
    "a signal handler that exits 0 while the failure is reported": (
        "program", "import signal, sys\nsignal.signal(signal.SIGALRM, lambda *a: sys.exit(0))\n"
                   "signal.setitimer(signal.ITIMER_REAL, 0.05)\nclass E(Exception):\n    def __str__(self):\n"
                   "        import time\n        time.sleep(0.2)\n        return 'slow'\nraise E()\n"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_no_sample_breaks_stalls_or_floods_the_evaluator(name, capfd):
    kind, source = HOSTILE[name]
    timeout = 3.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the evaluator's high-water mark
    start = time.monotonic()
    if kind == "program":
        result = run_program(source, timeout=timeout, guard=False)
    else:
        result = check_program(source, TESTS, "add", timeout=timeout, prompt=PROMPT, guard=False)
    took = time.monotonic() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) * 1024
    written = len(capfd.readouterr().err.encode())
    assert result.status != "error", (name, result)
    assert took <= timeout + 5 and grown < 256 * MiB and written < 64 * 1024, (name, took, grown, written)
    assert result.reason.isprintable(), (name, result.reason)


def test_a_sample_killed_by_an_unknown_signal_is_named():
    assert signal_reason(40).startswith("killed by SIGRTMIN+6") or signal_reason(40).startswith("killed by signal 40")
    assert signal_reason(99) == "killed by signal 99: signal"
    # without a PID namespace (there the sample is its namespace's init, which no signal of its own can kill)
    result = run_program("import signal\nsignal.raise_signal(40)\n", guard=False, os_layers=False, unisolated=True)
    assert result.status == "failed" and result.exit_code == -40, result
    assert result.reason == signal_reason(40)


def test_a_reason_cannot_claim_a_pass():
    result = check_program(HOSTILE["control characters in the reason"][1], TESTS, "add", prompt=PROMPT)
    assert result.status == "failed"
    assert result.reason.startswith("raised ValueError: ok\\r\\x0b\\x1cnothing") and result.reason.isprintable()


def test_a_failing_programs_output_is_kept_and_a_sparse_file_reads_as_what_was_written():
    failing = run_program("print('partial result')\nraise RuntimeError('late')\n")
    assert failing.status == "failed" and "partial result" in failing.stdout and "RuntimeError: late" in failing.reason
    sparse = run_program("import os, sys\nsys.stdout.write('start')\nsys.stdout.flush()\n"
                         "os.lseek(1, 8 * 1024 * 1024, os.SEEK_SET)\nsys.stdout.write('END')\n", guard=False)
    assert sparse.passed and "\x00" * 16 not in sparse.stdout and sparse.stdout.endswith("END"), sparse.stdout[-50:]


def test_a_plain_run_leaves_no_secret_in_the_samples_process():
    """The verdict of a plain run is its exit status, judged outside: walking every frame (from a signal handler,
    which receives the interrupted frame) finds no token, and no descriptor but the standard three is open."""
    program = ("import os, signal, time, re\nseen = []\nsignal.signal(signal.SIGALRM, lambda s, f: seen.append(f))\n"
               "signal.setitimer(signal.ITIMER_REAL, 0.01)\ntime.sleep(0.1)\nf, found = seen[0], []\n"
               "while f is not None:\n    for v in list(f.f_locals.values()):\n"
               "        if isinstance(v, str) and re.fullmatch('[0-9a-f]{32}', v):\n            found.append(v)\n"
               "    f = f.f_back\nopen_fds = []\nfor fd in range(3, 256):\n    try:\n        os.fstat(fd)\n"
               "        open_fds.append(fd)\n    except OSError:\n        pass\n"
               "print('FOUND', found, 'FDS', open_fds)\n")
    result = run_program(program, guard=False)
    assert result.passed, result
    assert "FOUND [] FDS []" in result.stdout, result.stdout


def test_the_audit_layer_cannot_be_switched_off_from_the_program():
    """`import __main__` reaches the jail module: changing its globals or a function's code changes nothing."""
    program = ("import __main__, sys\n__main__.BLOCKED_EVENTS = frozenset()\n__main__.FRAME_ATTRIBUTES = frozenset()\n"
               "try:\n    __main__.audit_hook.__code__ = (lambda *a: None).__code__\n    print('REWROTE')\n"
               "except ValueError:\n    print('REFUSED')\ntry:\n    sys._getframe()\n    print('FRAME')\n"
               "except ValueError:\n    print('BLOCKED')\n")
    result = run_program(program, guard=False)
    assert result.passed and "REFUSED" in result.stdout and "BLOCKED" in result.stdout, result


def test_a_stalling_sample_never_holds_up_a_trivial_one():
    """Two run_many workers: the evaluator compiles nothing itself, so the trivial sample's worker is free."""
    stall = "f(" + ",".join(f"a{i}=1" for i in range(20_000)) + ")\nimport time\ntime.sleep(30)\n"
    cpu = time.process_time()
    start = time.monotonic()
    slow, quick = run_many([stall, "print('quick')"], workers=2, timeout=3.0, guard=False)
    assert quick.passed and quick.wall_s < 2.0 and slow.status in ("timeout", "failed")
    assert time.monotonic() - start < 3.0 + 5
    assert time.process_time() - cpu < 2.0  # the sample's compile ran in its jail, not here


def test_a_refused_run_says_how_to_opt_in(monkeypatch):
    result = run_program("print(1)", os_layers=False)
    assert result.status == "error" and "refused" in result.reason and "GPTSUITE_SANDBOX_UNISOLATED=1" in result.reason
    monkeypatch.setenv(sandbox.UNISOLATED_ENV, "1")
    assert run_program("print(1)", os_layers=False).passed


def in_a_forked_child(work) -> tuple:
    """Run `work()` in a forked child (which may change its uid or mounts without touching this process) and
    return the tuple it returns, passed back as its repr."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.write(write_end, repr(work()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return eval(b"".join(chunks).decode())  # noqa: S307 - our own child's repr


# --- as an ordinary user -------------------------------------------------------------------------------------
def _readable_python() -> str | None:
    """An interpreter an unprivileged uid can run: this one where its folders are open to all, else the
    system's python3 (the jail is stdlib only)."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if candidate and os.access(candidate, os.X_OK) and _open_to_all(os.path.realpath(candidate)):
            return candidate
    return None


def _open_to_all(path: str) -> bool:
    parts = path.strip("/").split("/")
    return all(os.stat("/" + "/".join(parts[:i])).st_mode & 0o005 for i in range(1, len(parts)))


@pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"),
                    reason="needs root to become an ordinary user for the test")
def test_as_an_ordinary_user_the_sample_sees_no_project_no_network_and_no_host_process(tmp_path):
    python = _readable_python()
    if python is None:
        pytest.skip("no interpreter here that an unprivileged user may run")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    project_file = os.path.abspath(__file__)
    program = (f"import os, socket\nout = []\ntry:\n    open({project_file!r}).read()\n    out.append('READ')\n"
               "except OSError:\n    out.append('noread')\n"
               f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    out.append('CONNECTED')\n"
               "except OSError:\n    out.append('nonet')\n"
               "pids = [p for p in os.listdir('/proc') if p.isdigit()]\nout.append(f'pids={len(pids)}')\n"
               "out.append('hostname' if os.path.exists('/etc/hostname') else 'nohostname')\nprint(' '.join(out))\n")
    def as_nobody():  # the child becomes "nobody" and runs the sandbox as that user would
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        sandbox.PYTHON = python
        tempfile.tempdir = "/tmp"  # the tests' own temporary folder is closed to other users
        result = run_program(program, timeout=10, guard=False)
        return result.status, result.stdout, result.reason, result.isolation

    status, stdout, reason, isolation = in_a_forked_child(as_nobody)
    listener.close()
    if status == "error" and "refused" in reason:
        pytest.skip(f"this kernel gives ordinary users no namespaces: {reason}")
    assert status == "passed", (status, reason, stdout)
    assert {"userns", "netns", "pidns", "fsview", "nocaps", "seccomp"} <= set(isolation), isolation
    words = stdout.split()
    assert words[:2] == ["noread", "nonet"] and words[3] == "nohostname", stdout
    assert int(words[2].split("=")[1]) <= 2, stdout  # the sample (its namespace's init), not the host's processes


def test_the_jails_children_are_found_without_the_proc_children_file(monkeypatch):
    """The PID namespace's init is killed through its parent, the jail; a kernel may lack its children file."""
    import subprocess

    child = subprocess.Popen(["sleep", "5"])
    try:
        assert child.pid in cleanup.children_of(os.getpid())

        def no_children_file(path, *args, **kwargs):
            if str(path).endswith("/children"):
                raise FileNotFoundError(path)
            return open(path, *args, **kwargs)

        monkeypatch.setattr(cleanup, "open", no_children_file, raising=False)
        assert child.pid in cleanup.children_of(os.getpid())
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"), reason="mounts need root")
def test_a_writable_mount_below_the_interpreter_is_read_only_inside():
    """Each interpreter folder is bound with the mounts below it; every one of them is made read-only, not only
    the top one. Set up in a private mount namespace of a forked child, so the host's mounts never change."""
    import ctypes
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    target = next((os.path.join(stdlib, d) for d in ("idlelib", "lib2to3", "turtledemo", "pydoc_data")
                   if os.path.isdir(os.path.join(stdlib, d))), None)
    if target is None:
        pytest.skip("no spare standard-library folder to mount over")
    def mount_and_probe():
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.unshare(0x00020000) == 0  # CLONE_NEWNS
        assert libc.mount(None, b"/", None, (1 << 14) | (1 << 18), None) == 0  # MS_REC | MS_PRIVATE
        assert libc.mount(b"tmpfs", target.encode(), b"tmpfs", 0, b"size=1m") == 0
        open(os.path.join(target, "outside"), "w").close()  # writable here, outside the sandbox
        probe = os.path.join(target, "inside")
        result = run_program(f"open({probe!r}, 'w').write('x')\n", guard=False)
        return result.status, result.reason, os.path.exists(probe)

    status, reason, written = in_a_forked_child(mount_and_probe)
    assert status == "failed" and "Read-only file system" in reason and not written, (status, reason)


def test_a_prompt_longer_than_a_command_line_allows_is_not_an_error():
    """The prompt travels in a file (a command-line argument over 128 KiB would fail to start the jail)."""
    prompt = "#" + "\U000e0001" * 15_000 + "\n" + "# padding\n" * 14_000 + PROMPT  # a repr of about 290 KB
    result = check_program(prompt + "    return a + b\n", TESTS, "add", prompt=prompt)
    assert result.passed, result


def test_a_plain_runs_reason_says_what_is_the_programs_own_text():
    """The exit status is the evaluator's; the stderr line after it is the program's, and says so."""
    result = run_program("import sys\nsys.stderr.write('still running after the 5 s wall-clock limit\\n')\n"
                         "raise SystemExit(3)\n")
    assert result.status == "failed"
    assert result.reason == "exit code 1; its stderr ends: SystemExit: 3"
    unreadable = run_program("import sys\nsys.stderr.write('SampleUnreadable: fake\\n')\nx = (\n")
    assert unreadable.reason.startswith("the program is not valid Python") and "fake" not in unreadable.reason
