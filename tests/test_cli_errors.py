"""Every user mistake in a gptsuite command is one line, `gptsuite <command>: error: ...`, with a non-zero exit
and no traceback; a run stopped by SIGINT or SIGTERM says so and exits non-zero."""

from __future__ import annotations

import json
import signal

import pytest

from tasks.cli import main
from tests.helpers import ROOT, SENTENCES, make_backbone


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("backbone") / "nano")


def one_line_error(capsys, argv: list[str], prefix: str) -> str:
    """Run the command; assert it failed with exactly one stderr line starting with `prefix`; that line."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own exit on a bad flag
        code = exit_.code
    assert code not in (0, None)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines and lines[-1].startswith(prefix), err
    error_lines = [line for line in lines if ": error: " in line]
    assert error_lines == [lines[-1]], err  # one error line, last
    return lines[-1]


def write_csv(path, rows=SENTENCES, header="text,label"):
    path.write_text(header + "\n" + "".join(f'"{t}",{label}\n' for t, label in rows))
    return str(path)


def fit_argv(task, backbone, *extra):
    return [task, "fit", "--config", f"{ROOT}/configs/tasks/{task}.yaml", "--model.backbone", str(backbone),
            "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true", *extra]


def test_lightning_command_errors_are_one_line(capsys, tmp_path, backbone_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, fit_argv("classification", tmp_path / "none"), "gptsuite classification fit: error:")
    assert "gptsuite pretrain fit --config configs/pretrain/tiny.yaml" in line  # the command that makes it
    line = one_line_error(capsys, fit_argv("classification", backbone_dir, "--data.train_file", "missing.csv"),
                          "gptsuite classification fit: error:")
    assert "the train file missing.csv does not exist" in line
    bad_column = write_csv(tmp_path / "bad.csv", header="sentence,label")
    line = one_line_error(capsys, fit_argv("classification", backbone_dir, "--data.train_file", bad_column),
                          "gptsuite classification fit: error:")
    assert "text" in line and "sentence" in line
    line = one_line_error(capsys, fit_argv("classification", backbone_dir, "--data.batch_size", "many"),
                          "gptsuite classification fit: error:")
    assert "data.batch_size" in line and "many" in line
    one_line_error(capsys, ["ner", "fit", "--config", "nope.yaml"], "gptsuite ner fit: error:")
    one_line_error(capsys, ["pretrain", "fit", "--trainer.max_steps", "x"], "gptsuite pretrain fit: error:")


def test_argparse_command_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, ["generate", "--preset", "nano", "--prompt", "x", "--top-p", "high"],
                          "gptsuite generate: error:")
    assert "--top-p" in line
    one_line_error(capsys, ["generate", "--backbone", "nowhere", "--prompt", "x"], "gptsuite generate: error:")
    one_line_error(capsys, ["bench", "--preset", "no-such-preset"], "gptsuite bench: error:")
    one_line_error(capsys, ["no-such-command"], "gptsuite: error:")
    one_line_error(capsys, ["data", "overlap", "imdb"], "gptsuite data overlap: error: unknown benchmark 'imdb'")
    one_line_error(capsys, ["data", "overlap", "bbc_news", "--n", "0"], "gptsuite data overlap: error: --n must be")
    one_line_error(capsys, ["demo", "--task", "nowhere"], "gptsuite demo: error: --task nowhere holds no saved task")


def test_predict_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, ["ner", "predict", "--task", "nowhere", "--input", "x.txt", "--output", "o.jsonl"],
                          "gptsuite ner predict: error:")
    assert "gptsuite ner fit --config configs/tasks/ner.yaml --model.export_dir nowhere" in line
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps({"name": "qa", "task": "x"}))
    line = one_line_error(capsys, ["ner", "predict", "--task", "task", "--input", "x.txt", "--output", "o.jsonl"],
                          "gptsuite ner predict: error:")
    assert "holds a qa model, not a ner one" in line
    one_line_error(capsys, ["ner", "predict", "--task", "task"], "gptsuite ner predict: error:")


def test_read_inputs_says_what_is_wrong(tmp_path):
    from tasks.outputs import Question
    from tasks.predict import read_inputs

    (tmp_path / "a.csv").write_bytes("\ufefftext,label\nhello,1\n".encode())  # a spreadsheet's byte-order mark
    assert read_inputs(tmp_path / "a.csv", str) == ["hello"]
    (tmp_path / "b.csv").write_text("hello\nworld\n")  # no header: the first input would be taken for one
    with pytest.raises(ValueError, match="needs a header row naming the column\\(s\\) text; its first row is hello"):
        read_inputs(tmp_path / "b.csv", str)
    (tmp_path / "c.jsonl").write_text('{"sentence": "one field"}\n{"id": 2, "note": "two fields"}\n')
    with pytest.raises(ValueError, match="input 2: no `text` field"):
        read_inputs(tmp_path / "c.jsonl", str)
    (tmp_path / "d.txt").write_text("a\u2028still the first line\r\nsecond\n")
    assert read_inputs(tmp_path / "d.txt", str) == ["a\u2028still the first line", "second"]
    (tmp_path / "e.conll").write_text("-DOCSTART-\n\nAngela\nMerkel\n\nParis B-LOC\n")  # words alone are enough
    assert read_inputs(tmp_path / "e.conll", str) == ["Angela Merkel", "Paris"]
    (tmp_path / "q.jsonl").write_text('{"question": "q?", "context": "c."}\n"just text"\n')
    with pytest.raises(ValueError, match="input 2: a question needs `question` and `context`"):
        read_inputs(tmp_path / "q.jsonl", Question)
    (tmp_path / "e.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no input"):
        read_inputs(tmp_path / "e.txt", str)
    (tmp_path / "x.pdf").write_text("x")
    with pytest.raises(ValueError, match="must end in one of"):
        read_inputs(tmp_path / "x.pdf", str)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_says_so_and_exits_non_zero(capsys, tmp_path, backbone_dir, monkeypatch, signum):
    monkeypatch.chdir(tmp_path)
    train = write_csv(tmp_path / "train.csv", SENTENCES * 4)
    callbacks = json.dumps([{"class_path": "tests.helpers.SignalAtStep", "init_args": {"step": 1, "signum": signum}}])
    code = main(fit_argv("classification", backbone_dir, "--data.train_file", train, "--data.batch_size", "2",
                         "--trainer.callbacks", callbacks, "--model.export_dir", "exported"))
    assert code == 128 + signum
    err = capsys.readouterr().err
    assert f"gptsuite classification fit: stopped by {signal.Signals(signum).name}" in err
    assert not (tmp_path / "exported").exists()  # an interrupted fit exports nothing
    assert signal.getsignal(signum) is not None and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_broken_preset_file_is_a_clear_error_and_breaks_no_other_command(tmp_path, capsys):
    from tasks.recipes import load_preset, preset_help

    (tmp_path / "empty-task.yaml").write_text("backbone: b\ntasks:\n  ner:\n")
    with pytest.raises(ValueError, match="tasks.ner: no methods"):
        load_preset(str(tmp_path / "empty-task.yaml"))
    (tmp_path / "flat.yaml").write_text("backbone: b\ntasks:\n  ner:\n    methods:\n      m: a/path.yaml\n")
    with pytest.raises(ValueError, match=r"tasks.ner.methods.m \(a mapping: \{config: FILE\}\) must be a mapping"):
        load_preset(str(tmp_path / "flat.yaml"))
    (tmp_path / "typo.yaml").write_text("backbone: b\ntask: {}\n")
    line = one_line_error(capsys, ["bench", "--preset", str(tmp_path / "typo.yaml")], "gptsuite bench: error:")
    assert "unknown key(s) ['task']" in line
    assert "quick: the main job" in preset_help()


def test_a_forked_worker_dies_of_sigterm_as_its_pool_expects(monkeypatch):
    """The command's signal handler is inherited by forked workers (the corpus build's pool): there SIGTERM must
    end the process, as the pool's terminate() expects, not raise into the worker's code (the pool then waited
    for ever)."""
    import tasks.cli as cli

    seen = []
    monkeypatch.setattr(cli, "_dispatch", lambda argv: seen.append(_run_a_worker_and_terminate_it()) or 0)
    assert cli.main(["info"]) == 0
    assert seen == [-signal.SIGTERM]


def _run_a_worker_and_terminate_it() -> int:
    import multiprocessing
    import time

    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
    worker.start()
    time.sleep(0.2)
    worker.terminate()
    worker.join(10)
    return worker.exitcode


def test_a_renamed_key_is_refused_naming_the_new_one(tmp_path):
    """`model.context` became `model.bidirectional`: an old command line, recipe or task file says so."""
    from backbone.renamed_keys import RenamedKeyError, refuse_renamed_keys
    from tasks.renamed_keys import RENAMED

    with pytest.raises(RenamedKeyError, match="`model.context` was renamed `model.bidirectional`"):
        refuse_renamed_keys(["fit", "--model.context", "bilstm"], RENAMED)
    recipe = tmp_path / "old.yaml"
    recipe.write_text("model:\n  context_hidden: 16\n  head_dropout: 0.1\n")
    renamed = "old.yaml: `model.context_hidden` was renamed `model.bidirectional_hidden`"
    with pytest.raises(RenamedKeyError, match=renamed):
        refuse_renamed_keys(["fit", f"--config={recipe}"], RENAMED)
    recipe.write_text("model:\n  bidirectional_hidden: 16\n")
    refuse_renamed_keys(["fit", "--config", str(recipe), "--model.bidirectional", "bilstm"], RENAMED)  # new keys pass


def test_the_task_command_refuses_a_renamed_key(capsys):
    assert main(["ner", "fit", "--model.context", "bilstm"]) != 0
    assert "`model.context` was renamed `model.bidirectional`" in capsys.readouterr().err


def test_a_task_file_written_before_a_rename_is_refused_naming_the_new_key(tmp_path):
    """A saved task's hparams with an old key (model.context) would not fit the module's constructor: the
    message says which key was renamed, and to what."""
    from backbone.artifact import ArtifactError
    from tasks.artifact import read_task_file

    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps({
        "task": "tasks.ner.module.TokenClassifier", "hparams": {"context": "bilstm", "head_dropout": 0.1},
        "adapter": {"class_path": "tasks.adapters.FullFineTune", "init_args": {}}}))
    renamed = "written before a rename .*`model.context` was renamed `model.bidirectional`"
    with pytest.raises(ArtifactError, match=renamed):
        read_task_file(task_file)
