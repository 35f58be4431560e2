"""Hostile programs against the code-generation sandbox: each must end as a non-passing sample, fast, and
leave the machine as it was. Many run with and without the reliability guard, to show that the process
boundary, rlimits, namespaces, private uid and cleanup hold on their own."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time

import pytest

from tasks.codegen.sandbox import check_program, run_many, run_program

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox tests need Linux")
GUARD = pytest.mark.parametrize("guard", [True, False], ids=["guard", "noguard"])

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


SEEN_UIDS: set[int] = set()  # every private uid this module's sandboxes ran under


def _uid(result) -> int | None:
    uid = next((int(x[4:]) for x in result.isolation if x.startswith("uid=")), None)
    if uid is not None:
        SEEN_UIDS.add(uid)
    return uid


def _leftovers(uid: int | None) -> list[str]:
    """Every process of the sandbox's uid, zombies included (an unreaped zombie is a leftover too)."""
    if uid is None:
        return []
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/status") as f:
                if any(line.startswith("Uid:") and int(line.split()[1]) == uid for line in f):
                    found.append(name)
        except OSError:
            pass
    return found


def test_correct_program_passes_and_wrong_one_fails():
    good = check_program(PROMPT + "    return a + b\n", TESTS, "add")
    _uid(good)
    bad = check_program(PROMPT + "    return a - b\n", TESTS, "add")
    _uid(bad)
    assert good.status == "passed", good
    assert bad.status == "failed" and "AssertionError" in bad.reason


def test_invalid_python_fails_with_its_reason_compiled_in_the_jail():
    """The evaluator never compiles a sample itself (a pathological one would cost its time and memory):
    the jail does, under the sample's limits, and the reason comes back."""
    result = check_program(PROMPT + "    return a +\n", TESTS, "add")
    _uid(result)
    assert result.status == "failed" and "the completion is not valid Python: invalid syntax (line 3)" in result.reason
    plain = run_program("x = (1\n")
    assert plain.status == "failed" and plain.reason == "the program is not valid Python: '(' was never closed (line 1)"


def test_problem_without_tests_is_an_error_never_a_pass():
    result = check_program(PROMPT + "    return a + b\n", "  \n", "add")
    _uid(result)
    assert result.status == "error" and "no tests" in result.reason


def test_infinite_loop_times_out():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", timeout=1.0)
    _uid(result)
    assert result.status == "timeout"
    assert time.monotonic() - start < 2.5
    assert not _leftovers(_uid(result))


@GUARD
@pytest.mark.parametrize("bomb", [
    "import os\nwhile True:\n    os.fork()\n",
    "import os\nwhile True:\n    try:\n        if os.fork() == 0:\n            os.setsid()\n"
    "    except Exception:\n        pass\n",
], ids=["plain", "persistent-setsid"])
def test_fork_bomb_ends_and_leaves_no_process(guard, bomb):
    start = time.monotonic()
    result = run_program(bomb, timeout=1.5, guard=guard)
    _uid(result)
    assert result.status in ("failed", "timeout"), result
    assert time.monotonic() - start < 3.5
    assert not _leftovers(_uid(result)), "processes of the fork bomb survived"


@GUARD
def test_ten_gigabyte_allocation_fails_fast(guard):
    start = time.monotonic()
    result = run_program("x = bytearray(10 * 1024 ** 3)\nprint(len(x))\n", timeout=3.0, guard=guard)
    _uid(result)
    assert result.status == "failed" and "MemoryError" in result.reason
    assert time.monotonic() - start < 2.0


@GUARD
def test_files_outside_the_temp_dir_are_untouched(tmp_path, guard):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep me")
    escape = f"/tmp/gptsuite-escape-{os.getpid()}-{guard}"
    program = (
        "import os, shutil\n"
        f"path = {str(sentinel)!r}\n"
        "for attack in (lambda: os.remove(path), lambda: open(path, 'w').write('pwned'),\n"
        "               lambda: shutil.rmtree(os.path.dirname(path)), lambda: os.rename(path, path + '.x')):\n"
        "    try:\n        attack()\n    except Exception as e:\n        print(type(e).__name__)\n"
        f"open({escape!r}, 'w').write('left behind')\n"
    )
    result = run_program(program, timeout=2.0, guard=guard)
    _uid(result)
    assert len(result.stdout.split()) == 4, "every attack should have raised"  # TypeError / FileNotFoundError
    assert sentinel.read_text() == "keep me"
    assert not os.path.exists(escape), "a file written to /tmp outlived the sandbox"


@GUARD
def test_socket_cannot_reach_a_local_listener(guard):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        program = f"import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\n"
        result = run_program(program, timeout=2.0, guard=guard)
        _uid(result)
        if not guard and "netns" not in result.isolation:
            pytest.skip("no network namespace here: only the guard blocks sockets")
        assert result.status == "failed", result
        with pytest.raises(socket.timeout):
            listener.accept()


@GUARD
@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)"])
def test_exiting_before_the_tests_is_not_a_pass(guard, exit_call):
    completion = f"    return a - b\n{exit_call}\n"
    result = check_program(PROMPT + completion, TESTS, "add", guard=guard)
    _uid(result)
    assert result.status == "failed", result


def test_environment_secrets_are_invisible(monkeypatch):
    monkeypatch.setenv("GPTSUITE_FAKE_SECRET", "hunter2-token")
    program = (
        "import os\nprint(dict(os.environ))\n"
        "for path in ('/proc/self/environ', f'/proc/{os.getppid()}/environ', '/proc/1/environ'):\n"
        "    try:\n        print(open(path, 'rb').read())\n    except Exception as e:\n        print(path, e)\n"
    )
    result = run_program(program, timeout=2.0, guard=False)
    _uid(result)
    assert result.status == "passed", result
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("stream", ["sys.stdout", "sys.stderr"])
def test_output_flood_is_bounded(stream):
    start = time.monotonic()
    result = run_program(f"import sys\nwhile True:\n    {stream}.write('x' * 65536)\n", timeout=3.0,
                         output_cap=4096)
    _uid(result)
    assert result.status == "failed" and "File too large" in result.reason  # RLIMIT_FSIZE stops it
    assert len(result.stdout) <= 4200 and len(result.stderr) <= 4200
    assert time.monotonic() - start < 2.5


def test_temp_dir_is_removed(tmp_path, monkeypatch):
    base = tmp_path / "sandboxes"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    result = run_program("import os\nos.makedirs('a/b')\nopen('a/b/f.txt', 'w').write('x')\nprint(os.getcwd())\n",
                         timeout=2.0)
    _uid(result)
    assert result.status == "passed", result
    assert os.listdir(base) == []


def test_run_many_keeps_order_and_survives_bad_programs():
    good = {"solution": PROMPT + "    return a + b\n", "test_code": TESTS, "entry_point": "add"}
    programs = ["print('ok')", "while True: pass", {**good, "solution": PROMPT + "    return a +\n"},
                "raise SystemExit(0)", good, "import os\nos._exit(3)"]
    start = time.monotonic()
    results = run_many(programs, workers=2, timeout=1.5, progress=True)
    [_uid(r) for r in results]
    assert [r.status for r in results] == ["passed", "timeout", "failed", "failed", "passed", "failed"]
    assert time.monotonic() - start < 4.0


def test_no_sandbox_process_outlives_the_suite():
    """After everything above, no process (zombies included) runs under any uid this module's sandboxes used
    (other evaluations running at the same time have their own uids)."""
    if os.geteuid() != 0:
        pytest.skip("private uids need root")
    _uid(run_program("pass", timeout=1.0))
    assert SEEN_UIDS, "the sandbox did not drop to a private uid"
    assert not [pid for uid in SEEN_UIDS for pid in _leftovers(uid)]
