"""Code generation: fine-tune the backbone on Python, then score HumanEval / MBPP by running its code.

For every problem, `num_samples` completions are sampled (the `generation` config: temperature, top_p,
stop sequences at a new top-level def / class / if / print / comment) plus one greedy completion. Each
prompt + completion is run against the problem's tests in the sandbox (tasks.codegen.sandbox: a separate
process, limits, no network) and never in this process. pass@k uses the unbiased estimator of Chen et al.
(2021) (tasks.codegen.passk), for each k in `ks` with k <= num_samples; greedy_pass@1 is the fraction of
problems whose greedy completion passes.

Bad rows: a problem without tests (or without a prompt / entry point) is reported and skipped; a completion
that is not valid Python is a failed sample (the sandbox says so); a problem whose decoding fails counts
its samples as failed, with a warning. None of these stops the evaluation.
"""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import Metric

from backbone.chat import chat_prompt
from backbone.generate import GenerationConfig
from tasks.codegen.examples import choose, worked_examples
from tasks.codegen.passk import pass_at_k
from tasks.codegen.sandbox import IsolationUnavailable, Result, check_program, run_many
from tasks.generative import GenerativeTask
from tasks.outputs import Completion

STOP = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#")
CLOSE_BLOCK = "```"  # the end of the code block an instruct model answers in
CHAT_STOP = (CLOSE_BLOCK, "\nif __name__")  # chat: STOP would cut a reply at its imports or a helper def
CHAT_INSTRUCTION = "Complete the following Python function."
SHOWN_TESTS = "Your code should pass these tests:"  # MBPP's standard prompt (Austin et al. 2021) shows 3
MAX_EXAMPLES = 6  # worked examples run per completion when choosing: bounds the sandbox's work per problem


def shown_asserts(test: str, entry_point: str, count: int) -> list[str]:
    """The first `count` asserts of a problem's `check(candidate)` tests, as calls of the function itself
    (`assert candidate(2) == 4` -> `assert square(2) == 4`): what MBPP's standard prompt shows the model.
    One-line asserts only, as MBPP's and HumanEval's are (a multi-line one would be shown cut)."""
    asserts = [line.strip() for line in test.splitlines() if line.strip().startswith("assert candidate(")]
    return [a.replace("candidate(", f"{entry_point}(") for a in asserts[:count]]
DEFAULT_GENERATION = GenerationConfig(max_new_tokens=128, temperature=0.8, top_p=0.95, stop=STOP, seed=0,
                                      truncate_prompt=True)


def problem_issue(row: dict) -> str | None:
    """Why a problem cannot be scored, or None."""
    for column in ("prompt", "test", "entry_point"):
        value = row.get(column)
        if not isinstance(value, str) or not value.strip():
            return "no tests" if column == "test" else f"no {column}"
    return None


def prompt_only_pass_at_1(problems, timeout: float = 3.0) -> float:
    """Baseline: the prompt alone (a docstring-only function) run against each problem's tests."""
    rows = [dict(r) for r in problems if problem_issue(r) is None]  # a datasets.Dataset or a list of dicts
    if not rows:
        return 0.0
    results = run_many([{"solution": r["prompt"], "prompt": r["prompt"], "test_code": r["test"],
                         "entry_point": r["entry_point"], "timeout": timeout} for r in rows])
    return sum(r.passed for r in results) / len(rows)


class PassAtK(Metric):
    """Per problem: samples n, passing samples c, greedy passed and chosen passed (1/0, or -1 when not run).
    compute() -> {"pass@k" for k in ks with k <= every n, "greedy_pass@1", "chosen_pass@1"}."""

    full_state_update = False

    def __init__(self, ks: tuple[int, ...] = (1, 10)):
        super().__init__()
        self.ks = tuple(ks)
        for name in ("n", "c", "greedy", "chosen"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, n: int, c: int, greedy: int, chosen: int = -1) -> None:
        self.n.append(torch.tensor([n], dtype=torch.long))
        self.c.append(torch.tensor([c], dtype=torch.long))
        self.greedy.append(torch.tensor([greedy], dtype=torch.long))
        self.chosen.append(torch.tensor([chosen], dtype=torch.long))

    def compute(self) -> dict[str, float]:
        cat = lambda xs: torch.cat(xs) if isinstance(xs, list) else xs  # noqa: E731
        if not self.n:
            return {}
        n, c = cat(self.n), cat(self.c)
        out = {}
        for k in self.ks:
            if int(n.min()) >= k:
                out[f"pass@{k}"] = float(pass_at_k(n.tolist(), c.tolist(), k).mean())
        for name, passed in (("greedy_pass@1", cat(self.greedy)), ("chosen_pass@1", cat(self.chosen))):
            ran = passed[passed >= 0]
            if len(ran):
                out[name] = float(ran.float().mean())
        return out


class CodeGenerator(GenerativeTask):
    """Its own arguments; the rest are GenerativeTask's (passed on as **kwargs).

    Args:
        generation: sampling settings for the n samples (temperature, top_p, max_new_tokens, stop, seed).
        num_samples: completions sampled per problem (0: greedy only).
        ks: pass@k values reported (each only when num_samples >= k).
        greedy: also decode one greedy completion per problem (greedy_pass@1).
        timeout: wall-clock seconds per program in the sandbox.
        workers: sandbox processes at once (None: every core).
        decode_rows: the most sequences decoded in one batch: the samples of several problems share a
            batch up to this many rows (at least one problem's samples).
        prompt: "plain" (the model continues the problem's code) or "chat" (an instruct model is asked, in
            its chat template, to complete the function, its answer begun for it with "```python": it writes
            the whole function, the block's closing ``` ends it, and the tests run the problem's code followed
            by the model's, whose definition replaces the stub). An instruct model given the bare code tends
            to close the block at once and explain: SmolLM2-135M-Instruct did on 3 of 3 HumanEval problems.
        show_tests: how many of each problem's test asserts the prompt shows, called by the function's name
            (MBPP's standard prompt shows 3; HumanEval's docstrings carry their own examples: 0). Chat: after
            the code, under "Your code should pass these tests:"; plain: as comments after the docstring.
        choose_by_examples: run each problem's samples and greedy completion against the worked examples its
            prompt shows (tasks.codegen.examples, at most MAX_EXAMPLES) and submit the one passing most
            (ties: the greedy one, else the one written most often): chosen_pass@1. The hidden tests never
            choose. Refused with show_tests, whose shown asserts are the hidden tests.
    """

    output_type = Completion

    def __init__(self, num_samples: int = 10, ks: list[int] | None = None, greedy: bool = True, timeout: float = 3.0,
                 workers: int | None = None, decode_rows: int = 32, generation: GenerationConfig | None = None,
                 prompt: Literal["plain", "chat"] = "plain", show_tests: int = 0, choose_by_examples: bool = False,
                 **kwargs):
        super().__init__(generation=generation if generation is not None else DEFAULT_GENERATION, **kwargs)
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if not num_samples and not greedy:
            raise ValueError("nothing to evaluate: set num_samples >= 1 or greedy: true")
        if prompt not in ("plain", "chat"):
            raise ValueError(f"prompt must be 'plain' or 'chat', got {prompt!r}")
        if prompt == "chat":  # a whole function with its imports and helpers: only the block's end stops it
            self.generation = self.generation.replace(stop=CHAT_STOP)
        if decode_rows < 1:
            raise ValueError(f"decode_rows must be >= 1, got {decode_rows}")
        if show_tests < 0:
            raise ValueError(f"show_tests must be >= 0, got {show_tests}")
        if choose_by_examples and show_tests:
            raise ValueError("choose_by_examples with show_tests would choose by the hidden tests the prompt shows "
                             "(MBPP's standard prompt): score such a run without choosing")
        if choose_by_examples and num_samples + int(greedy) < 2:
            raise ValueError("choose_by_examples needs at least two completions a problem (num_samples, greedy)")
        self.hparams.ks = list(ks or [1, 10])
        self.skipped: list[str] = []  # the test problems not scored, and why (the test report lists them)
        self._problem_index = 0  # the next test problem's index in the test epoch (its samples' seed)
        self.stage_metrics: nn.ModuleDict | None = None  # {"test": PassAtK}, built by build_head

    def build_head(self) -> None:
        self.stage_metrics = nn.ModuleDict({"test": PassAtK(tuple(self.hparams.ks))})

    @property
    def greedy_config(self) -> GenerationConfig:
        return self.generation.replace(temperature=0.0, num_beams=1)

    def training_pair(self, row: dict) -> tuple[str, str]:
        return "", row["text"]

    def decoding_prompt(self, code: str, asserts: list[str] | None = None) -> str:
        """What the decoder continues for a problem's code (its signature and docstring) and the tests shown
        (shown_asserts)."""
        asserts = asserts or []
        if self.hparams.prompt == "plain":
            return code + "".join(f"    # {a}\n" for a in asserts)
        ask = f"{CHAT_INSTRUCTION}\n\n```python\n{code.rstrip()}\n```"
        if asserts:
            ask += f"\n\n{SHOWN_TESTS}\n\n```python\n" + "\n".join(asserts) + "\n```"
        return chat_prompt(self.tokenizer, [{"role": "user", "content": ask}]) + "```python\n"

    def problem_prompt(self, row: dict) -> str:
        """decoding_prompt for a test problem, with show_tests of its asserts."""
        shown = shown_asserts(row["test"], row["entry_point"], self.hparams.show_tests)
        return self.decoding_prompt(row["prompt"], shown)

    def program(self, code: str, completion: str) -> str:
        """What the tests run: the problem's code and the completion (chat: the model's whole function after
        the problem's stub, which it redefines)."""
        return code + ("\n" + completion if self.hparams.prompt == "chat" else completion)

    def metrics(self, stage: str) -> dict:
        return {"pass_at_k": self.stage_metrics["test"]} if stage == "test" else {}

    # --- evaluation ------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.skipped, self._problem_index = [], 0

    def complete(self, problems: list[dict], first_index: int, samples: int) -> list[list[str]]:
        """`samples` sampled completions of each problem, decoded as one batch (seeded by the index of the
        first problem), or with samples=0 its one greedy completion; rows leave the batch as they reach a
        stop string."""
        if not samples:
            return [[text] for text in self.generate([self.problem_prompt(p) for p in problems], self.greedy_config)]
        seed = (self.generation.seed or 0) + first_index
        flat = self.generate([self.problem_prompt(p) for p in problems for _ in range(samples)],
                             self.generation.replace(seed=seed))
        return [flat[i * samples:(i + 1) * samples] for i in range(len(problems))]

    def _complete_all(self, todo: list[tuple[dict, int, int]], samples: int) -> list[list[str] | str]:
        """complete() for each problem of todo, as many problems a batch as fit in decode_rows rows (the greedy
        completions of decode_rows problems share one batch); when a batch fails, its problems one by one, so
        one bad problem (a prompt longer than the context, say) fails alone: its entry is the error."""
        if not todo:
            return []
        per_batch = max(1, self.hparams.decode_rows // max(samples, 1))
        if len(todo) > per_batch:
            return [out for i in range(0, len(todo), per_batch) for out in self._complete_all(todo[i:i + per_batch],
                                                                                             samples)]
        try:
            return self.complete([row for row, _, _ in todo], todo[0][1], samples)
        except Exception as e:  # noqa: BLE001 - one bad row never kills the evaluation
            if len(todo) > 1:
                return [out for item in todo for out in self._complete_all([item], samples)]
            row = todo[0][0]
            rank_zero_warn(f"codegen: {row.get('task_id') or 'problem'}: decoding failed ({type(e).__name__}: {e}); "
                           "its samples count as failed")
            return [f"decoding failed: {type(e).__name__}: {e}"]

    def update_metrics(self, stage: str, batch: dict) -> None:
        if stage != "test":
            return
        h = self.hparams
        work, todo = [], []  # work: (problem, samples, greedy, error); todo: (problem, its index, its slot)
        for row in batch["rows"]:
            index, self._problem_index = self._problem_index, self._problem_index + 1
            task_id = row.get("task_id") or f"problem {index}"
            issue = problem_issue(row)
            if issue:
                rank_zero_warn(f"codegen: {task_id}: {issue}, skipped (not scored)")
                self.skipped.append(f"{task_id}: {issue}")
                continue
            work.append((row, [None] * h.num_samples, None, None))
            todo.append((row, index, len(work) - 1))
        sampled = self._complete_all(todo, h.num_samples) if h.num_samples else [[] for _ in todo]
        greedy = self._complete_all(todo, 0) if h.greedy else [[None] for _ in todo]
        for (row, _, slot), samples, one in zip(todo, sampled, greedy):
            errors = [out for out in (samples, one) if isinstance(out, str)]
            work[slot] = (row, [None] * h.num_samples if isinstance(samples, str) else samples,
                          None if isinstance(one, str) else one[0], errors[0] if errors else None)
        programs, owners = [], []
        for w, (row, samples, greedy, _) in enumerate(work):
            for s, completion in enumerate([*samples, *([greedy] if h.greedy else [])]):
                if completion is not None:
                    programs.append({"solution": self.program(row["prompt"], completion), "prompt": row["prompt"],
                                     "test_code": row["test"], "entry_point": row["entry_point"],
                                     "timeout": h.timeout})
                    owners.append((w, s))
        results = dict(zip(owners, run_many(programs, workers=h.workers))) if programs else {}
        refused = next((r.reason for r in results.values() if r.status == "error" and r.reason.startswith("refused")),
                       None)
        if refused:  # a machine that cannot isolate the samples: a clear stop, not a silent pass@k of 0
            raise IsolationUnavailable(f"the sandbox {refused}")
        choices = self._choose_by_examples(work) if h.choose_by_examples else {}
        failed = Result("failed", reason="decoding failed")
        for w, (row, samples, greedy, error) in enumerate(work):
            sample_results = [results.get((w, s), failed) for s in range(h.num_samples)]
            greedy_result = results.get((w, h.num_samples), failed) if h.greedy else None
            passed = sum(r.passed for r in sample_results)
            chosen, examples_passed = choices.get(w, (None, None))
            chosen_passed = -1 if chosen is None else int(results.get((w, chosen), failed).passed)
            self.stage_metrics["test"].update(h.num_samples, passed,
                                              -1 if greedy_result is None else int(greedy_result.passed),
                                              chosen_passed)
            # per problem: each pass@k estimate (a mean over problems), and the greedy result where it ran
            estimates = [float(pass_at_k([h.num_samples], [passed], k)[0]) if h.num_samples >= k else 0.0
                         for k in h.ks]
            greedy_ran = greedy_result is not None
            self.record_example_stats("test", "problems", [[*estimates, 1.0, float(greedy_ran and greedy_result.passed),
                                                            float(greedy_ran), float(max(chosen_passed, 0)),
                                                            float(chosen_passed >= 0)]])
            self.record_predictions("test", [{
                "task_id": row.get("task_id"), "error": error, "passed": passed, "samples": len(sample_results),
                "greedy_passed": None if greedy_result is None else greedy_result.passed,
                "greedy_completion": greedy, "greedy_reason": None if greedy_result is None else greedy_result.reason,
                "completions": samples, "statuses": [r.status for r in sample_results],
                "reasons": [r.reason for r in sample_results],
                **({"chosen": chosen, "chosen_passed": bool(chosen_passed > 0), "examples_passed": examples_passed}
                   if h.choose_by_examples else {})}])

    def _choose_by_examples(self, work: list[tuple]) -> dict[int, tuple[int, list[int]]]:
        """For each problem of work (problem, samples, greedy, error): the index of the completion to submit
        (samples first, greedy last, as the hidden tests' results are keyed) and how many worked examples each
        completion passed. Every distinct program runs against each example once."""
        h, checks, plans = self.hparams, {}, {}
        for w, (row, samples, greedy, _) in enumerate(work):
            examples = worked_examples(row["prompt"], row["entry_point"], MAX_EXAMPLES)
            completions = [*samples, *([greedy] if h.greedy else [])]
            plans[w] = (examples, completions)  # without examples every count is 0: the greedy one is submitted
            for completion in dict.fromkeys(c for c in completions if c is not None):
                for e, example in enumerate(examples):
                    checks[(w, completion, e)] = {
                        "solution": self.program(row["prompt"], completion), "prompt": row["prompt"],
                        "test_code": example.check_code(row["entry_point"]), "entry_point": row["entry_point"],
                        "timeout": h.timeout}
        verdicts = dict(zip(checks, run_many(list(checks.values()), workers=h.workers))) if checks else {}
        choices = {}
        for w, (examples, completions) in plans.items():
            counts = [0 if c is None else sum(verdicts[(w, c, e)].passed for e in range(len(examples)))
                      for c in completions]
            choices[w] = (choose(counts, completions, h.num_samples if h.greedy else None), counts)
        return choices

    def interval_metrics(self) -> dict:
        ks = list(self.hparams.ks)
        n = len(ks)  # per problem: pass@k estimates..., 1, greedy passed, greedy ran, chosen passed, chosen ran
        out = {f"pass@{k}": ("problems", lambda s, i=i: float(s[i] / s[n]) if s[n] else 0.0)
               for i, k in enumerate(ks) if self.hparams.num_samples >= k}
        if self.hparams.greedy:
            out["greedy_pass@1"] = ("problems", lambda s: float(s[n + 1] / s[n + 2]) if s[n + 2] else 0.0)
        if self.hparams.choose_by_examples:
            out["chosen_pass@1"] = ("problems", lambda s: float(s[n + 3] / s[n + 4]) if s[n + 4] else 0.0)
        return out

    def test_report(self) -> dict:
        h = self.hparams
        return {**super().test_report(),
                "test/scoring": f"unbiased pass@k (Chen et al. 2021) from {h.num_samples} samples per problem (seed: "
                                f"generation seed + index of the first problem in its decoding batch of up to "
                                f"{h.decode_rows} rows); every program run in the sandbox, {h.timeout:g} s "
                                f"timeout" + ("; greedy_pass@1 from one greedy completion" if h.greedy else ""),
                "test/generation": self.generation.describe(), "test/skipped": self.skipped,
                "test/prompt": ("chat template, the reply begun with the problem's code in a python block"
                                if h.prompt == "chat" else "the problem's code, continued")
                               + (f"; {h.show_tests} of its test asserts shown" if h.show_tests else ""),
                "test/choice": (f"chosen_pass@1: of the {h.num_samples} samples" + (" and the greedy completion"
                                if h.greedy else "") + f", the one passing most of the prompt's worked examples "
                                f"(at most {MAX_EXAMPLES}; ties: greedy, then the most frequent); problems without "
                                "examples submit the greedy completion (without greedy: the most frequent sample)"
                                if h.choose_by_examples else "none: every sample scored as it came"
                                + (" (the prompt shows the hidden tests, which would choose by the answers)"
                                   if h.show_tests else ""))}

    # --- use -------------------------------------------------------------------------------------------
    def predict_batch(self, prompts: list[str], num_samples: int = 0) -> list[Completion]:
        """The greedy completion of each code prompt (signature and docstring), and num_samples sampled ones."""
        asked = [self.decoding_prompt(p) for p in prompts]
        greedy = self.generate(asked, self.greedy_config)
        return [Completion(text, self.generate([prompt] * num_samples) if num_samples else [])
                for prompt, text in zip(asked, greedy)]

    def run_tests(self, prompt: str, completion: str, test: str, entry_point: str) -> Result:
        """Run HumanEval-style tests (`def check(candidate)`) on the program of prompt and completion (see
        program), in the sandbox."""
        return check_program(self.program(prompt, completion), test, entry_point, timeout=self.hparams.timeout,
                             prompt=prompt)
