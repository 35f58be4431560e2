"""Code generation: pass@k through the real sandbox on a fake completion set, stop sequences, bad rows,
the CLI with fast_dev_run, save/reload, the demo helpers."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from backbone.generate import cut_at_stop
from tasks.artifact import load_task, save_task
from tasks.task_cli import run_cli
from tests.helpers import ROOT, make_backbone, newest_file, newest_metrics

ADD = {"task_id": "t/add", "prompt": "def add(a, b):\n    \"\"\"Sum.\"\"\"\n",
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add"}
NEG = {"task_id": "t/neg", "prompt": "def neg(x):\n", "test": "def check(candidate):\n    assert candidate(2) == -2\n",
       "entry_point": "neg"}
NO_TESTS = {"task_id": "t/none", "prompt": "def f():\n", "test": "  ", "entry_point": "f"}
GEN = {"max_new_tokens": 6, "temperature": 0.8, "seed": 0, "truncate_prompt": True,
       "stop": ["\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#"]}


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("backbone") / "nano")


def generator(backbone_dir, **kw):
    from tasks.codegen.module import CodeGenerator

    task = CodeGenerator(backbone=str(backbone_dir), generation=kw.pop("generation", GEN), **kw)
    task.configure_model()
    return task.eval()


def score_canned(task, rows: list[dict], canned: dict[str, list[str]], greedy: dict[str, str]) -> None:
    """One test epoch's update over `rows`, the model's completions replaced by canned ones per prompt (samples
    from `canned`, the greedy one from `greedy`): what the sandbox and the scoring make of known programs."""
    from tasks.codegen.module import CodeGenerator

    def fake_complete(self, problems, first_index, samples):
        return [canned[p["prompt"]] if samples else [greedy[p["prompt"]]] for p in problems]

    CodeGenerator.complete, original = fake_complete, CodeGenerator.complete
    try:
        task.on_test_epoch_start()
        task.update_metrics("test", {"rows": rows})
    finally:
        CodeGenerator.complete = original


def test_pass_at_k_of_a_fake_completion_set_through_the_sandbox(backbone_dir):
    """add: 3 of 10 samples pass (one sample is not valid Python); neg: none pass. Greedy: add passes."""

    task = generator(backbone_dir, num_samples=10, ks=[1, 10])
    canned = {
        ADD["prompt"]: ["    return a + b\n"] * 3 + ["    return a - b\n"] * 6 + ["    return a +\n"],
        NEG["prompt"]: ["    return x\n"] * 9 + ["    import os\n    os._exit(0)\n"],
    }
    greedy = {ADD["prompt"]: "    return a + b\n", NEG["prompt"]: "    return x\n"}
    score_canned(task, [ADD, NO_TESTS, NEG], canned, greedy)
    scores = task.stage_metrics["test"].compute()
    assert scores["pass@1"] == pytest.approx((0.3 + 0.0) / 2)
    assert scores["pass@10"] == pytest.approx((1.0 + 0.0) / 2)
    assert scores["greedy_pass@1"] == pytest.approx(0.5)
    intervals = task.test_intervals()  # two problems: pass@1 0.3 and 0.0, so a resample's mean is 0, 0.15 or 0.3
    assert intervals["pass@1"] == [0.0, 0.3] and intervals["greedy_pass@1"] == [0.0, 1.0]
    assert set(intervals) == {"pass@1", "pass@10", "greedy_pass@1"}
    assert task.skipped == ["t/none: no tests"]
    add = next(r for r in task.scored_examples.records if r["task_id"] == "t/add")
    assert add["passed"] == 3 and "not valid Python" in add["reasons"][-1]
    neg = next(r for r in task.scored_examples.records if r["task_id"] == "t/neg")
    assert neg["statuses"][-1] == "failed"  # os._exit(0) before the tests is not a pass


def test_an_evaluation_stops_where_the_sandbox_cannot_isolate(backbone_dir, monkeypatch):
    """No namespaces on this machine and no opt-in: a clear error naming the way out, not pass@k = 0."""
    from tasks.codegen.module import CodeGenerator
    from tasks.codegen.sandbox import IsolationUnavailable, run_program

    task = generator(backbone_dir, num_samples=1, ks=[1])
    monkeypatch.setattr(CodeGenerator, "complete",
                        lambda self, problems, first, samples: [["    return a + b\n"] for _ in problems])
    refused = run_program("pass", os_layers=False)  # what the sandbox answers on a machine without namespaces
    assert refused.status == "error"
    monkeypatch.setattr("tasks.codegen.module.run_many", lambda programs, **kw: [refused for _ in programs])
    task.on_test_epoch_start()
    with pytest.raises(IsolationUnavailable, match="GPTSUITE_SANDBOX_UNISOLATED=1"):
        task.update_metrics("test", {"rows": [ADD]})


def test_pass_at_k_needs_n_at_least_k():
    from tasks.codegen.module import PassAtK

    metric = PassAtK((1, 10))
    metric.update(4, 2, 1)
    assert metric.compute() == {"pass@1": pytest.approx(0.5), "greedy_pass@1": 1.0}


def test_stop_sequences_cut_completions(backbone_dir):
    from tasks.codegen.module import STOP

    code = "    return a + b\n\ndef other():\n    pass\n"
    assert cut_at_stop(code, STOP) == ("    return a + b\n", True)
    assert cut_at_stop("    x = 1\n# done\n", STOP)[0] == "    x = 1"
    assert cut_at_stop("    if x:\n        print(x)\n", STOP) == ("    if x:\n        print(x)\n", False)
    # through the module's decoder: a stop string taken from the unstopped (seeded) sample cuts it there
    task = generator(backbone_dir)
    config = task.generation.replace(temperature=1.5, max_new_tokens=16, eos_token_id=-1)
    free = task.generate([ADD["prompt"]], config.replace(stop=()))[0]
    stop = next(free[i : i + 2] for i in range(3, len(free) - 1) if free[i : i + 2].strip())
    cut = task.generate([ADD["prompt"]], config.replace(stop=(stop,)))[0]
    assert cut == free[: free.find(stop)] and len(cut) < len(free)


def test_problem_decoding_failure_counts_as_failed_not_a_crash(backbone_dir):
    task = generator(backbone_dir, num_samples=2, ks=[1], generation={**GEN, "truncate_prompt": False})
    long = {**ADD, "task_id": "t/long", "prompt": "def add(a, b):\n" + "    # a very long comment line\n" * 40}
    task.on_test_epoch_start()
    task.update_metrics("test", {"rows": [long]})
    assert task.stage_metrics["test"].compute() == {"pass@1": 0.0, "greedy_pass@1": 0.0}
    assert "decoding failed" in task.scored_examples.records[0]["error"]


def test_run_tests_helper_and_prompt_only_baseline(backbone_dir):
    from tasks.codegen.module import prompt_only_pass_at_1

    task = generator(backbone_dir)
    assert task.run_tests(ADD["prompt"], "    return a + b\n", ADD["test"], "add").passed
    bad = task.run_tests(ADD["prompt"], "    return a +\n", ADD["test"], "add")
    assert bad.status == "failed" and "not valid Python" in bad.reason
    assert prompt_only_pass_at_1([ADD, NEG, NO_TESTS]) == 0.0
    import datasets

    trivial = {**ADD, "test": "def check(candidate):\n    assert candidate(1, 2) is None\n"}
    assert prompt_only_pass_at_1(datasets.Dataset.from_list([trivial, ADD])) == 0.5


def test_chunks_follow_line_boundaries(backbone_dir):
    from backbone.tokenizer import Tokenizer
    from tasks.codegen.data import chunk_lines

    tokenizer = Tokenizer.from_pretrained(backbone_dir)
    text = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(20))
    chunks = chunk_lines(tokenizer, text, 30)
    assert "".join(chunks).replace("\n\n", "\n") == text.replace("\n\n", "\n")
    assert all(c.endswith("\n") for c in chunks) and len(chunks) > 3


def test_saved_task_reloads_to_identical_predictions(backbone_dir, tmp_path):
    task = generator(backbone_dir)
    with torch.no_grad():
        task.backbone.transformer.h[0].mlp.c_fc.weight.add_(0.1)
    before = task.predict(ADD["prompt"])
    sampled = task.predict(ADD["prompt"], num_samples=3)
    save_task(task, tmp_path / "task")
    again = load_task(tmp_path / "task")
    assert again.predict(ADD["prompt"]) == before and isinstance(before.text, str) and before.samples == []
    assert again.predict(ADD["prompt"], num_samples=3) == sampled  # seeded sampling
    assert len(sampled.samples) == 3 and sampled.text == before.text  # the greedy text comes with the samples
    assert again.generation.stop == task.generation.stop
    with pytest.raises(ValueError, match="item 0 is empty"):
        again.predict("  ")


def test_codegen_cli_fit_and_test(backbone_dir, tmp_path, monkeypatch):
    cli_main = functools.partial(run_cli, "codegen")

    code = [{"text": f"def f{i}(x):\n    return x * {i}\n\n\ndef g{i}(y):\n    return y - {i}\n"} for i in range(6)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in code))
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in (ADD, NO_TESTS, NEG)))
    files = {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")}
    common = ["--config", f"{ROOT}/configs/tasks/codegen.yaml", "--model.backbone", str(backbone_dir),
              "--data.data_files", json.dumps(files), "--trainer.precision", "32",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--model.generation", json.dumps(GEN),
              "--model.num_samples", "2", "--model.ks", "[1, 2]", "--model.max_length", "48",
              "--data.batch_size", "2", "--data.max_eval_examples", "null"]
    cli_main(["fit", *common, "--trainer.fast_dev_run", "1", "--model.export_dir", str(tmp_path / "task")])
    assert isinstance(load_task(tmp_path / "task").predict(ADD["prompt"]).text, str)
    cli_main(["test", *common])
    metrics = newest_metrics(tmp_path / "run")
    assert {"test/pass@1", "test/pass@2", "test/greedy_pass@1"} <= metrics.keys()
    assert metrics["test/examples"] == 2 and metrics["test/skipped"] == ["t/none: no tests"]
    assert "from 2 samples per problem" in metrics["test/scoring"] and "greedy_pass@1" in metrics["test/scoring"]
    records = [json.loads(line)
               for line in newest_file(tmp_path / "run", "test_predictions.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in records] == ["t/add", "t/neg"] and len(records[0]["completions"]) == 2
    cli_main(["test", *common, "--data.max_eval_examples", "1", "--model.num_samples", "0", "--model.ks", "[1]"])
    newest = max((tmp_path / "run").rglob("test_metrics.json"), key=lambda p: p.stat().st_mtime_ns)
    metrics = json.loads(newest.read_text())
    assert "test/pass@1" not in metrics and "test/greedy_pass@1" in metrics and metrics["test/examples"] == 1


def test_samples_of_several_problems_decode_together_up_to_decode_rows(backbone_dir, monkeypatch):
    """num_samples=3, decode_rows=6: two problems' samples share one batch, the greedy completions of up to 6
    problems another; every completion goes back to its own problem, and a batch that fails is retried
    problem by problem."""
    from tasks.codegen.module import CodeGenerator

    task = generator(backbone_dir, num_samples=3, ks=[1], decode_rows=6)
    calls = []

    def fake_generate(self, prompts, config=None):
        calls.append((len(prompts), config.temperature))
        if any("boom" in p for p in prompts):
            raise ValueError("prompt too long")
        return [f"    return {p.split('(')[0][4:]}_{i}\n" for i, p in enumerate(prompts)]

    monkeypatch.setattr(CodeGenerator, "generate", fake_generate)
    third = {**NEG, "task_id": "t/third", "prompt": "def third(x):\n"}
    boom = {**NEG, "task_id": "t/boom", "prompt": "def boom(x):\n"}
    task.on_test_epoch_start()
    task.update_metrics("test", {"rows": [ADD, NEG, third, boom]})
    # samples: [add, neg] together, [third, boom] fails as a pair, then alone each; greedy: all four fail
    # together (boom), then one by one
    assert calls == [(6, 0.8), (6, 0.8), (3, 0.8), (3, 0.8), (4, 0.0), (1, 0.0), (1, 0.0), (1, 0.0), (1, 0.0)]
    records = {r["task_id"]: r for r in task.scored_examples.records}
    assert records["t/add"]["completions"] == [f"    return add_{i}\n" for i in range(3)]
    assert records["t/neg"]["completions"] == [f"    return neg_{i}\n" for i in range(3, 6)]
    assert records["t/neg"]["greedy_completion"] == "    return neg_0\n"
    assert records["t/third"]["greedy_completion"] == "    return third_0\n" and records["t/third"]["error"] is None
    assert records["t/third"]["completions"] == [f"    return third_{i}\n" for i in range(3)]
    assert records["t/boom"]["error"].startswith("decoding failed") and records["t/boom"]["passed"] == 0
    with pytest.raises(ValueError, match="decode_rows"):
        generator(backbone_dir, decode_rows=0)


def test_chat_prompt_begins_the_reply_with_the_problems_code(backbone_dir, monkeypatch):
    """prompt=chat: the instruct model is asked in its template and writes the whole function in a python block
    of its own reply; the block's closing ``` ends it, and the tests run it after the problem's stub."""
    from tasks.codegen.module import CHAT_INSTRUCTION, CHAT_STOP, CodeGenerator

    task = generator(backbone_dir, prompt="chat", num_samples=2, ks=[1])
    task.tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    try:
        asked = task.decoding_prompt(ADD["prompt"])
        assert asked == f"<user>{CHAT_INSTRUCTION}\n\n```python\n{ADD['prompt'].rstrip()}\n```<assistant>```python\n"
        # the whole function comes back: imports, helpers and comments at column 0 do not end it, ``` does
        assert task.generation.stop == task.greedy_config.stop == CHAT_STOP and "\ndef " not in CHAT_STOP
        seen = []

        def fake_generate(self, prompts, config=None):
            seen.extend(prompts)
            return ["def add(a, b):\n    return a + b\n"] * len(prompts)  # the whole function, the ``` cut

        monkeypatch.setattr(CodeGenerator, "generate", fake_generate)
        task.on_test_epoch_start()
        task.update_metrics("test", {"rows": [ADD]})
        assert seen == [asked] * 3  # 2 samples + greedy
        assert task.stage_metrics["test"].compute()["greedy_pass@1"] == 1.0
        assert task.program(ADD["prompt"], "x = 1") == ADD["prompt"] + "\nx = 1"
        assert task.run_tests(ADD["prompt"], "import math\n\n\ndef add(a, b):\n    return a + b\n", ADD["test"],
                              "add").passed
        assert task.test_report()["test/prompt"].startswith("chat template")
    finally:
        task.tokenizer.chat_template = None
    plain = generator(backbone_dir)
    assert plain.decoding_prompt(ADD["prompt"]) == ADD["prompt"] and plain.program("a", "b") == "ab"
    with pytest.raises(ValueError, match="prompt must be"):
        generator(backbone_dir, prompt="instruct")


def test_mbpp_standard_prompt_shows_the_first_asserts(backbone_dir, monkeypatch):
    """show_tests=3: the prompt shows the first three asserts of check(candidate), calling the function by its
    name, as MBPP's standard prompt does; the tests run are still the problem's own, all of them."""
    from tasks.codegen.module import SHOWN_TESTS, CodeGenerator, shown_asserts

    four = {**ADD, "test": "def check(candidate):\n" + "".join(f"    assert candidate({i}, 1) == {i + 1}\n"
                                                                for i in range(4)) + "    print('done')\n"}
    assert shown_asserts(four["test"], "add", 3) == [f"assert add({i}, 1) == {i + 1}" for i in range(3)]
    assert shown_asserts(four["test"], "add", 0) == []
    task = generator(backbone_dir, prompt="chat", num_samples=0, show_tests=3)
    task.tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    try:
        seen = []

        def fake_generate(self, prompts, config=None):
            seen.extend(prompts)
            return ["def add(a, b):\n    return a + b\n"] * len(prompts)

        monkeypatch.setattr(CodeGenerator, "generate", fake_generate)
        task.on_test_epoch_start()
        task.update_metrics("test", {"rows": [four]})
        shown = "\n".join(f"assert add({i}, 1) == {i + 1}" for i in range(3))
        assert seen == [f"<user>Complete the following Python function.\n\n```python\n{ADD['prompt'].rstrip()}\n```"
                        f"\n\n{SHOWN_TESTS}\n\n```python\n{shown}\n```<assistant>```python\n"]
        assert task.stage_metrics["test"].compute()["greedy_pass@1"] == 1.0
        assert task.test_report()["test/prompt"].endswith("3 of its test asserts shown")
    finally:
        task.tokenizer.chat_template = None
    plain = generator(backbone_dir, show_tests=1)
    assert plain.problem_prompt(four) == ADD["prompt"] + "    # assert add(0, 1) == 1\n"
    with pytest.raises(ValueError, match="show_tests"):
        generator(backbone_dir, show_tests=-1)
