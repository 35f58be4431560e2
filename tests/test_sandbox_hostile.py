"""The sandbox against programs written to beat it: forged verdicts, escapes to the host, state that would
outlive a run, kernel attack surface, and inputs that would crash the evaluator. Each program here is a
wrong solution or an attack; not one may count as passed, and nothing it does may reach the host."""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks.codegen.cleanup import processes_of, remove_tree
from tasks.codegen.sandbox import check_program, run_program

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox tests need Linux")
GUARD = pytest.mark.parametrize("guard", [True, False], ids=["guard", "noguard"])
ROOT = os.geteuid() == 0

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def verdict(body: str, guard: bool = True, tests: str = TESTS, **kw):
    """check_program on the add problem with `body` as the completion (indented into the function)."""
    completion = "".join("    " + line + "\n" for line in body.splitlines())
    return check_program(PROMPT + completion, tests, "add", prompt=PROMPT, guard=guard, **kw)


def layers(result) -> set[str]:
    return {x.split("=")[0] for x in result.isolation}


# --- 1. a pass the sample cannot forge ----------------------------------------------------------------------
FORGERS = {
    # walk up from its own frame to every caller's locals, write every token-like string to every fd, exit 0
    "frames": "import sys, os\nf = sys._getframe()\nwhile f:\n    for v in list(f.f_locals.values()):\n"
              "        if isinstance(v, str) and len(v) == 32:\n            for fd in range(3, 40):\n"
              "                try: os.write(fd, (v + '\\n').encode())\n                except Exception: pass\n"
              "    f = f.f_back\nos._exit(0)",
    "traceback": "import os\ntry:\n    1 / 0\nexcept ZeroDivisionError as e:\n    f = e.__traceback__.tb_frame\n"
                 "while f:\n    for fd in range(3, 40):\n        try: os.write(fd, b'x' * 32 + b'\\n')\n"
                 "        except Exception: pass\n    f = f.f_back\nos._exit(0)",
    "gc": "import gc, os\nfor o in gc.get_objects():\n    if isinstance(o, dict):\n"
          "        for v in list(o.values()):\n            if isinstance(v, str) and len(v) == 32:\n"
          "                for fd in range(3, 40):\n                    try: os.write(fd, (v + '\\n').encode())\n"
          "                    except Exception: pass\nos._exit(0)",
    "generator": "g = (x for x in [1])\nf = g.gi_frame.f_back\nreturn 5",
    "always-equal": "class Any:\n    def __eq__(self, other): return True\nreturn Any()",
    "int-subclass": "class Five(int):\n    def __eq__(self, other): return True\n    __hash__ = int.__hash__\n"
                    "return Five(5)",
    "sys.exit": "import sys\nsys.exit(0)",
    "os._exit": "import os\nos._exit(0)",
    "signal-frame": "import signal, os\nseen = []\nsignal.signal(signal.SIGALRM, lambda s, f: seen.append(f))\n"
                    "signal.setitimer(signal.ITIMER_REAL, 0.001)\nimport time\ntime.sleep(0.05)\n"
                    "f = seen[0] if seen else None\nwhile f:\n    for fd in range(3, 40):\n"
                    "        try: os.write(fd, b'0' * 32 + b'\\n')\n        except Exception: pass\n"
                    "    f = f.f_back\nos._exit(0)",
}


@GUARD
@pytest.mark.parametrize("name", list(FORGERS))
def test_a_wrong_solution_never_passes(name, guard):
    result = verdict(FORGERS[name], guard)
    assert result.status == "failed", (name, result)


def test_a_solution_cannot_stand_in_for_a_builtin_the_tests_use():
    tests = "def check(candidate):\n    assert abs(candidate(2, 3) - 5) < 1e-9\n"
    shadow = PROMPT + "    return 0\n\n\ndef abs(x):\n    return 0\n"
    assert check_program(shadow, tests, "add", prompt=PROMPT).status == "failed"
    assert check_program(PROMPT + "    return a + b\n", tests, "add", prompt=PROMPT).passed


def test_exiting_while_the_solution_loads_is_not_a_pass():
    # the completion's own top level (outside the function): the solution dies before serving a call
    result = check_program(PROMPT + "    return a + b\nimport os\nos._exit(0)\n", TESTS, "add", prompt=PROMPT,
                           guard=False)
    assert result.status == "failed" and "did not load" in result.reason


def test_a_right_solution_still_passes_and_helpers_of_the_prompt_run_beside_the_tests():
    assert verdict("return a + b").passed
    # the tests call the prompt's encode() in their own process: the solution never sees the plain text
    prompt = 'def encode(s):\n    return s[::-1]\n\n\ndef decode(s):\n    """Undo encode."""\n'
    tests = "def check(candidate):\n    assert candidate(encode('abc')) == 'abc'\n"
    memoiser = ("    return LAST[-1] if LAST else ''\n\n\nLAST = []\n_real = encode\n\n\n"
                "def encode(s):\n    LAST.append(s)\n    return _real(s)\n")
    assert check_program(prompt + "    return s[::-1]\n", tests, "decode", prompt=prompt).passed
    assert check_program(prompt + memoiser, tests, "decode", prompt=prompt).status == "failed"


@GUARD
def test_the_audit_layer_closes_frame_and_gc_routes(guard):
    program = ("import sys\nblocked = []\n"
               "for probe in (lambda: sys._getframe(), lambda: __import__('gc').get_objects(),\n"
               "              lambda: (x for x in [1]).gi_frame, lambda: sys.settrace(None)):\n"
               "    try:\n        probe()\n    except ValueError as e:\n        blocked.append(str(e))\n"
               "assert len(blocked) == 4, blocked\n"
               "from collections import namedtuple\nnamedtuple('P', 'x y')(1, 2)  # stdlib users of _getframe\n")
    result = run_program(program, guard=guard)
    assert result.passed, result


# --- 2-5. nothing reaches the host, nothing outlives the run -------------------------------------------------
needs_root = pytest.mark.skipif(not ROOT, reason="the OS layers need root")


@needs_root
def test_every_os_layer_is_on_as_root():
    assert {"netns", "ipcns", "pidns", "mountns", "fsview", "tmpfs", "uid", "seccomp", "audit"} <= layers(
        verdict("return a + b"))


@needs_root
@GUARD
def test_host_unix_sockets_are_out_of_reach(tmp_path, guard):
    path = str(tmp_path / "daemon.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    server.setblocking(False)
    try:
        program = (f"import _socket\ns = _socket.socket(_socket.AF_UNIX)\ns.connect({path!r})\n"
                   "print('connected')\n")
        result = run_program(program, guard=guard)
        assert result.status == "failed" and "connected" not in result.stdout
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody knocked
    finally:
        server.close()


@needs_root
def test_the_host_is_not_readable(tmp_path):
    """Only the interpreter, its libraries, a few devices, /proc and the private /tmp are there at all."""
    secret = tmp_path / "secret.txt"
    secret.write_text("host data")
    project = str(Path(__file__).parents[1])
    program = (f"import os\nfor p in ({str(secret)!r}, '/etc/passwd', {project!r}, '/home', '/var/run'):\n"
               "    try:\n        open(p).read() if os.path.isfile(p) else os.listdir(p)\n"
               "        print('READ', p)\n    except OSError:\n        pass\n"
               "for top, dirs, files in os.walk('/'):\n"
               "    dirs[:] = [d for d in dirs if os.path.join(top, d) not in ('/proc', '/dev')]\n"
               "    for f in files:\n        print('FILE', os.path.join(top, f))\n")
    result = run_program(program, timeout=30)
    assert result.passed and "READ" not in result.stdout, result.stdout[-500:]
    allowed = ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/tmp/", os.path.realpath(sys.base_prefix))
    files = [line[5:] for line in result.stdout.splitlines() if line.startswith("FILE ")]
    assert files and all(f.startswith(allowed) for f in files), [f for f in files if not f.startswith(allowed)][:5]


@needs_root
@GUARD
def test_writable_host_folders_shared_memory_and_disk_are_not_shared(tmp_path, guard):
    before = {p: set(os.listdir(p)) for p in ("/run/lock", "/var/tmp", "/dev/shm") if os.path.isdir(p)}
    program = ("import os\nfor d in ('/run/lock', '/var/tmp', '/dev/shm', '/'):\n    try:\n"
               "        open(os.path.join(d, 'left-behind'), 'w').write('x')\n        print('WROTE', d)\n"
               "    except OSError:\n        pass\n"
               "big = b'x' * (15 << 20)\nwritten = 0\nfor i in range(25):\n    try:\n"
               "        open(f'/tmp/f{i}', 'wb').write(big)\n        written += 1\n    except OSError:\n        break\n"
               "print('FILES', written)\n")
    result = run_program(program, guard=guard, timeout=20)
    assert "WROTE" not in result.stdout, result.stdout
    assert "FILES" in result.stdout and int(result.stdout.split("FILES")[1].split()[0]) <= 5  # a 64 MiB tmpfs
    after = {p: set(os.listdir(p)) for p in before}
    assert after == before


@needs_root
def test_sysv_shared_memory_of_the_host_is_invisible():
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(0, 4096, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600: a host segment
    assert shmid >= 0
    try:
        result = run_program("print(open('/proc/sysvipc/shm').read())\n")
        assert result.passed and f" {shmid} " not in result.stdout
    finally:
        libc.shmctl(shmid, 0, None)  # IPC_RMID


@needs_root
def test_no_new_user_namespaces():
    """The seccomp filter, in a forked child as the sandbox installs it: unshare(CLONE_NEWUSER) is refused
    while a harmless unshare (a new UTS namespace) still works."""
    from tasks.codegen import isolation

    pid = os.fork()
    if pid == 0:
        try:
            isolation.no_user_namespaces()
            libc = ctypes.CDLL(None, use_errno=True)
            user = libc.unshare(isolation.CLONE_NEWUSER)
            user_errno = ctypes.get_errno()
            uts = libc.unshare(0x04000000)
            os._exit(0 if (user, user_errno, uts) == (-1, 1, 0) else 1)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


# --- 6. an evaluator that never raises ----------------------------------------------------------------------
def test_pathological_sources_are_failed_samples_not_crashes():
    deep = "return " + "1+" * 100_000 + "1"  # compiled in the jail: too deep for the compiler
    for body, why in ((deep, "cannot be compiled"), ("return 1" + " " * 300_000, "is over 262144 bytes"),
                      ("return '\ud800'", "not valid Unicode"), ("return 1\x00", "null bytes")):
        result = verdict(body)
        assert result.status == "failed" and why in result.reason, result


def test_a_deep_folder_tree_is_removed(tmp_path):
    top = tmp_path / "tree"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(3000):  # deeper than any path may be long, built one level at a time
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=inner), "w") as f:
            f.write("x")
        os.close(fd)
        fd = inner
    os.close(fd)
    remove_tree(str(top))
    assert not top.exists()


def test_a_deep_tree_made_by_a_sample_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    program = "import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n"
    run_program(program, guard=False, timeout=20)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("gptsuite-sandbox-")]


@needs_root
@pytest.mark.parametrize("kind", ["program", "solution"])
def test_a_sample_killed_from_outside_is_named(kind):
    """As the OOM killer would: SIGKILL every process of the sandbox's private uids while the sample runs."""
    results = []
    if kind == "program":
        work = threading.Thread(target=lambda: results.append(run_program("import time\ntime.sleep(30)\n",
                                                                          timeout=20)))
    else:
        work = threading.Thread(target=lambda: results.append(verdict("import time\ntime.sleep(30)", timeout=20)))
    work.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _sandbox_processes():
        time.sleep(0.05)
    time.sleep(0.3)  # past the set-up, into the sleep
    for pid in _sandbox_processes():
        os.kill(pid, 9)
    work.join()
    (result,) = results
    assert result.status == "failed" and "SIGKILL" in result.reason, result


def _sandbox_processes() -> list[int]:
    """Processes running under a sandbox's private uid (the range tasks.codegen.cleanup leases from)."""
    return [pid for uid in _private_uids() for pid in processes_of(uid=uid)]


def _private_uids() -> set[int]:
    uids = set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if 1 << 20 <= uid < 1 << 21:
            uids.add(uid)
    return uids


def test_without_the_os_layers_the_verdict_still_holds(monkeypatch):
    """Not root (or not Linux): no namespaces, no private uid; the two processes and plain data remain."""
    import tasks.codegen.sandbox as sandbox

    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    refused = verdict("return a + b", os_layers=False)
    assert refused.status == "error" and "refused: this machine gives the sandbox no netns, pidns, fsview" in \
        refused.reason and "GPTSUITE_SANDBOX_UNISOLATED=1" in refused.reason
    right = verdict("return a + b", os_layers=False, unisolated=True)  # the explicit opt-in
    assert right.passed and not {"netns", "fsview", "uid", "seccomp"} & layers(right)
    for name in ("frames", "gc", "always-equal", "os._exit"):
        assert verdict(FORGERS[name], guard=False, os_layers=False, unisolated=True).status == "failed", name


# --- found by reviewing the sandbox as an attacker ---------------------------------------------------------
CTYPES_BYPASS = ("import sys, _ctypes\ne = sys.modules['ctypes._endian']\n"
                 "f = e.CFUNCTYPE(e.c_long, e.c_long)(_ctypes.dlsym(e.pythonapi._handle, 'syscall'))\n"
                 "print('UID', f(102))\n")


@GUARD
def test_ctypes_cannot_be_reached_through_a_module_that_reexports_it(guard):
    result = run_program(CTYPES_BYPASS, guard=guard)
    assert result.status == "failed" and "UID" not in result.stdout, result


@needs_root
def test_the_seccomp_filter_refuses_keyrings_fallocate_ptrace_and_vsock():
    """In a forked child with the sandbox's filter: each call fails with the errno the filter gives."""
    from tasks.codegen import isolation

    pid = os.fork()
    if pid == 0:
        try:
            isolation.no_user_namespaces()
            libc = ctypes.CDLL(None, use_errno=True)
            codes = []
            for nr, args in ((250, (0, -4)), (248, (b"user", b"k", b"v", 1, -4)), (285, (1, 1, 0, 1 << 30)),
                             (101, (16, 1))):
                codes.append((libc.syscall(nr, *args), ctypes.get_errno()))
            try:
                socket.socket(isolation.AF_VSOCK, socket.SOCK_STREAM)
                vsock = 0
            except OSError as e:
                vsock = e.errno
            ok = codes == [(-1, 1)] * 4 and vsock == 97
            os._exit(0 if ok else 1)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@needs_root
def test_vsock_sockets_are_refused_inside():
    result = run_program("import _socket\ntry:\n    _socket.socket(40, 1)\n    print('VSOCK')\n"
                         "except OSError as e:\n    print('refused', e.errno)\n", guard=False)
    assert result.passed and "refused 97" in result.stdout and "VSOCK" not in result.stdout


def test_a_sample_that_breaks_its_output_file_does_not_break_the_evaluator():
    program = ("import fcntl, os\nprint('x' * 10, flush=True)\n"
               "fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_DIRECT)\n")
    assert run_program(program).passed
    assert verdict("import fcntl, os\nfcntl.fcntl(1, fcntl.F_SETFL, os.O_DIRECT)\nreturn 0").status == "failed"


def test_stop_iteration_from_the_solution_does_not_end_the_tests_loops():
    prompt = 'def is_prime(n):\n    """Is n prime?"""\n'
    tests = ("def check(candidate):\n    assert all(map(candidate, [2, 3, 5, 7, 11]))\n"
             "    assert not any(map(candidate, [1, 4, 6, 8, 9]))\n")
    for guard in (True, False):
        result = check_program(prompt + "    raise StopIteration\n", tests, "is_prime", prompt=prompt, guard=guard)
        assert result.status == "failed", result


def test_a_right_answer_of_any_size_crosses():
    assert verdict("return 10 ** 5000 if a == 2 else a + b",
                   tests="def check(candidate):\n    assert candidate(2, 3) == 10 ** 5000\n").passed


@needs_root
def test_memory_is_limited_for_the_sandbox_not_per_process():
    """Four children holding 250 MB each at once under memory_mb=512: each fits the per-process limit, but
    the sandbox's cgroup holds 512 MB in all, so not all four get to (without it, all four do)."""
    program = ("import os\nkids = []\nfor i in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
               "        try:\n            block = bytearray(250 << 20)\n"
               "            block[::4096] = b'x' * (len(block) // 4096)\n"
               "            print('ok', i, flush=True)\n            __import__('time').sleep(3)\n"
               "            os._exit(0)\n        except MemoryError:\n"
               "            os._exit(1)\n    kids.append(pid)\n"
               "import time\ntime.sleep(4)\n")
    result = run_program(program, guard=False, timeout=15)
    if "cgroup" not in result.isolation:
        pytest.skip("no writable cgroup hierarchy on this machine: memory is limited per process only")
    assert result.stdout.count("ok") <= 3, result.stdout
