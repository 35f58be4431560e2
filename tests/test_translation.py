"""Translation: target-only loss, sacreBLEU scores and signature, both directions, bad input, CLI, reload."""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from tasks.artifact import load_task, save_task
from tasks.generative import IGNORE, encode_pairs
from tasks.task_cli import run_cli
from tests.helpers import ROOT, make_backbone, newest_file, newest_metrics

PAIRS = [
    {"en": "the house is small", "es": "la casa es pequeña", "book": "Ruth", "chapter": 1, "verse": 1},
    {"en": "the dog is big", "es": "el perro es grande", "book": "Ruth", "chapter": 1, "verse": 2},
    {"en": "a good film", "es": "una buena película", "book": "Ruth", "chapter": 1, "verse": 3},
    {"en": "the best movie", "es": "la mejor película", "book": "Ruth", "chapter": 1, "verse": 4},
]
GEN = {"max_new_tokens": 6, "num_beams": 2, "stop": ["\n"], "truncate_prompt": True}


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("backbone") / "nano")


def translator(backbone_dir, **kw):
    from tasks.translation.module import Translator

    task = Translator(backbone=str(backbone_dir), generation=kw.pop("generation", GEN), **kw)
    task.configure_model()
    return task.eval()


def write_files(tmp_path, rows=PAIRS):
    files = {}
    for split in ("train", "validation", "test"):
        path = tmp_path / f"{split}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        files[split] = str(path)
    return files


def test_loss_is_on_target_tokens_only(backbone_dir):
    task = translator(backbone_dir)
    prompts = [task.prompt_text(p["en"]) for p in PAIRS[:2]]
    targets = [task.hparams.target_template.format(tgt=p["es"]) for p in PAIRS[:2]]
    ids, mask, labels = encode_pairs(task.tokenizer, prompts, targets, 64)
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        n_prompt = len(task.tokenizer.encode(prompt, add_bos=True))
        n_target = len(task.tokenizer.encode(target)) + 1  # + eos
        assert (labels[i, :n_prompt] == IGNORE).all()  # prompt positions are ignored
        assert labels[i, n_prompt : n_prompt + n_target].tolist() == ids[i, n_prompt : n_prompt + n_target].tolist()
        assert labels[i, n_prompt + n_target - 1] == task.tokenizer.eos_id
        assert (labels[i, n_prompt + n_target :] == IGNORE).all()  # padding too
        assert mask[i].sum() == n_prompt + n_target
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    with torch.no_grad():
        logits = task.backbone.lm_logits(task.backbone(ids, mask)).float()
        per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=IGNORE,
                                    reduction="none")
        expected = per_token[labels[:, 1:] != IGNORE].mean()
        torch.testing.assert_close(task.loss(batch), expected)
        # changing a prompt-position label would change nothing: only target positions count
        assert (labels[:, 1:] != IGNORE).sum() == sum(len(task.tokenizer.encode(t)) + 1 for t in targets)


def test_too_long_pairs_keep_the_prompt_end_and_the_target_start(backbone_dir):
    task = translator(backbone_dir)
    ids, mask, labels = encode_pairs(task.tokenizer, ["word " * 50], [" la casa " * 20], 32)
    assert ids.shape[1] == 32 and (labels != IGNORE).sum() >= 16
    assert labels[0, -1] != IGNORE  # the target fills the end


def test_bleu_and_chrf_match_sacrebleu_and_carry_signatures():
    import sacrebleu

    from tasks.translation.metrics import TranslationScores, corpus_scores

    hyps = ["la casa es pequeña", "el perro grande", "una película buena", ""]
    refs = ["la casa es pequeña", "el perro es grande", "una buena película", "la mejor película"]
    metric = TranslationScores()
    metric.update(hyps[:2], refs[:2])
    metric.update(hyps[2:], refs[2:])
    got = metric.compute()
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    scores = corpus_scores(hyps, refs)
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert scores["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    metric.reset()
    assert metric.items == [] and metric.signatures == {k: scores[k] for k in ("bleu_signature", "chrf_signature")}


def test_direction_switch(backbone_dir, tmp_path):
    from tasks.translation.data import TranslationData

    files = write_files(tmp_path)
    for direction, (src, tgt), header in (("en-es", ("en", "es"), "English: the house is small\nSpanish:"),
                                          ("es-en", ("es", "en"), "Spanish: la casa es pequeña\nEnglish:")):
        data = TranslationData(backbone=str(backbone_dir), data_files=files, direction=direction,
                               max_train_examples=2)
        data.setup("fit")
        assert (data.source_key, data.target_key) == (src, tgt)
        assert len(data.splits["train"]) == 2 and len(data.all_train) == len(PAIRS)  # the whole pool retrieves
        task = translator(backbone_dir, direction=direction)
        pair = {"source": data.splits["test"][0][src], "target": data.splits["test"][0][tgt]}
        assert task.training_pair(pair) == (header, f" {pair['target']}\n")
    with pytest.raises(ValueError, match="direction"):
        TranslationData(backbone=str(backbone_dir), direction="english")


def test_empty_source_names_the_row(backbone_dir, tmp_path):
    from tasks.translation.data import TranslationData

    rows = [*PAIRS[:2], {**PAIRS[2], "en": "   "}]
    data = TranslationData(backbone=str(backbone_dir), data_files=write_files(tmp_path, rows))
    with pytest.raises(ValueError, match=r"train row 2: empty source \('en' column\)"):
        data.setup("fit")
    with pytest.raises(ValueError, match="item 1 is empty"):
        translator(backbone_dir).predict(["hello", ""])


def test_prompt_and_prefix_tuning_are_refused_clearly(backbone_dir):
    from tasks.adapters import PrefixTuning, PromptTuning
    from tasks.translation.module import Translator

    for adapter in (PromptTuning(4), PrefixTuning(2)):
        with pytest.raises(ValueError, match="FullFineTune, Frozen, LoRA"):
            Translator(backbone=str(backbone_dir), adapter=adapter)


def test_saved_task_reloads_to_identical_predictions(backbone_dir, tmp_path):
    from tasks.adapters import LoRA

    task = translator(backbone_dir, adapter=LoRA(rank=2), direction="es-en")
    with torch.no_grad():
        for layer in task.adapter.layers:
            layer.lora_B.normal_()
    texts = ["la casa es pequeña", "el perro"]
    before = task.predict(texts)
    save_task(task, tmp_path / "task")
    again = load_task(tmp_path / "task")
    assert again.hparams.direction == "es-en" and again.generation.num_beams == 2
    assert again.predict(texts) == before


def test_translation_cli_fit_and_test(backbone_dir, tmp_path, monkeypatch):
    cli_main = functools.partial(run_cli, "translation")

    files = write_files(tmp_path)
    common = ["--config", f"{ROOT}/configs/tasks/translation.yaml", "--model.backbone", str(backbone_dir),
              "--data.data_files", json.dumps(files), "--trainer.precision", "32",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--model.generation", json.dumps(GEN),
              "--model.max_length", "48", "--data.batch_size", "2"]
    no_test = json.dumps({split: files[split] for split in ("train", "validation")})  # fit alone: no test after it
    cli = cli_main(["fit", *common, "--trainer.fast_dev_run", "1", "--model.export_dir", str(tmp_path / "task"),
                    "--model.score_validation", "true", "--data.data_files", no_test])
    assert {"val/loss", "val/bleu", "val/chrf"} <= cli.trainer.callback_metrics.keys()
    out = load_task(tmp_path / "task").predict(["the house"])
    assert len(out) == 1 and isinstance(out[0].text, str)
    cli_main(["test", *common, "--data.direction", "es-en"])
    metrics = newest_metrics(tmp_path / "run")
    assert {"test/bleu", "test/chrf", "test/examples"} <= metrics.keys()
    assert metrics["test/examples"] == len(PAIRS)
    assert "tok:13a" in metrics["bleu_signature"] and "nc:6" in metrics["chrf_signature"]
    assert metrics["test/direction"] == "es-en"
    assert metrics["test/generation"]["max_new_tokens"] == GEN["max_new_tokens"]
    lines = newest_file(tmp_path / "run", "test_predictions.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["source"] == PAIRS[0]["es"]


def test_retrieved_demonstrations_come_most_similar_last_and_never_the_pair_itself(backbone_dir):
    from tasks.translation.retrieval import BM25

    task = translator(backbone_dir, demonstrations=2)
    task._pool = BM25([p["en"] for p in PAIRS]), [p["es"] for p in PAIRS]
    prompt = task.prompt_text("the small house")
    # "the" alone ties three pairs: BM25 favours the shortest
    assert prompt == ("English: the best movie\nSpanish: la mejor película\n\n"
                      "English: the house is small\nSpanish: la casa es pequeña\n\n"
                      "English: the small house\nSpanish:")
    prompt, target = task.training_pair({"source": "the house is small", "target": "la casa es pequeña"})
    assert "Spanish: la casa es pequeña\n\n" not in prompt and target == " la casa es pequeña\n"
    assert prompt.endswith("English: the house is small\nSpanish:") and prompt.count("English:") == 3
    assert task.test_report()["test/prompt"] == "plain templates, 2 BM25-retrieved training pairs in context"


def test_chat_prompt_asks_in_turns(backbone_dir):
    from backbone.artifact import load_backbone
    from tasks.translation.retrieval import BM25

    task = translator(backbone_dir, demonstrations=1, prompt="chat", direction="es-en")
    task.tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"
    task._pool = BM25([p["es"] for p in PAIRS]), [p["en"] for p in PAIRS]
    assert task.prompt_text("el perro") == ("<user>Translate this Spanish text into English:\nel perro es grande\n"
                                            "<assistant>the dog is big\n"
                                            "<user>Translate this Spanish text into English:\nel perro\n<assistant>")
    assert task.training_pair({"source": "la casa", "target": "the house "})[1] == "the house"
    _, plain = load_backbone(backbone_dir)  # no chat template: a clear error
    task.tokenizer = plain
    with pytest.raises(ValueError, match="no chat template"):
        task.prompt_text("el perro")


def test_a_validation_split_held_out_of_train_leaves_the_retrieval_pool(backbone_dir, tmp_path):
    from tasks.translation.data import TranslationData

    files = write_files(tmp_path, PAIRS * 3)
    del files["validation"]
    data = TranslationData(backbone=str(backbone_dir), data_files=files)
    data.setup("fit")
    held_out = len(data.splits["validation"])
    assert held_out and len(data.all_train) == len(data.splits["train"]) == len(PAIRS) * 3 - held_out


def test_demonstrations_without_pairs_say_where_to_get_them(backbone_dir):
    task = translator(backbone_dir, demonstrations=2)
    with pytest.raises(ValueError, match="demonstration_data"):
        task.prompt_text("the house")


def test_cli_with_demonstrations_fits_tests_and_reloads(backbone_dir, tmp_path):
    files = write_files(tmp_path)
    common = ["--config", f"{ROOT}/configs/tasks/translation.yaml", "--model.backbone", str(backbone_dir),
              "--data.data_files", json.dumps(files), "--trainer.precision", "32",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--model.generation", json.dumps(GEN),
              "--model.max_length", "96", "--data.batch_size", "2", "--model.demonstrations", "2"]
    run_cli("translation", ["fit", *common, "--trainer.fast_dev_run", "1",
                            "--model.export_dir", str(tmp_path / "task")])
    run_cli("translation", ["test", *common])
    metrics = newest_metrics(tmp_path / "run")
    assert metrics["test/examples"] == len(PAIRS) and "2 BM25-retrieved" in metrics["test/prompt"]
    saved = json.loads((tmp_path / "task" / "task.json").read_text())["hparams"]
    assert saved["demonstrations"] == 2
    reloaded = load_task(tmp_path / "task")  # the user's files are not a benchmark: no pairs to retrieve from
    with pytest.raises(ValueError, match="demonstration_data"):
        reloaded.predict(["the house"])


def test_max_length_ratio_caps_each_translation_by_its_source(backbone_dir):
    greedy = {"max_new_tokens": 16, "num_beams": 1, "eos_token_id": -1, "truncate_prompt": True}  # no eos
    free = translator(backbone_dir, generation=greedy)
    capped = translator(backbone_dir, generation=greedy, max_length_ratio=0.5)
    sources = ["la casa", "el perro es grande"]
    limits = capped.length_limits(sources)
    assert limits == [math.ceil(0.5 * len(capped.tokenizer.encode(s))) + 2 for s in sources]
    assert limits[0] < limits[1] < 16 and free.length_limits(sources) is None
    out = capped.translate(sources)
    alone = [free.generate([free.prompt_text(s)], free.generation.replace(max_new_tokens=n))[0].strip()
             for s, n in zip(sources, limits)]
    assert out == alone and len(out[0]) < len(out[1])
    with pytest.raises(ValueError, match="num_beams 1"):  # beam search has no per-row limit: said at once
        translator(backbone_dir, max_length_ratio=0.5)
    with pytest.raises(ValueError, match="set one of them"):
        translator(backbone_dir, generation=greedy, max_length_ratio=0.5, lattice={"candidates": 2})
    with pytest.raises(ValueError, match="max_length_ratio must be > 0"):
        translator(backbone_dir, max_length_ratio=0.0)


def test_lattice_translates_with_the_lexicons_words_and_says_so(backbone_dir):
    from tasks.translation.lattice import Lexicon
    from tasks.translation.retrieval import BM25

    task = translator(backbone_dir, direction="es-en", lattice={"candidates": 2, "beam": 2})
    task._pool = BM25([p["es"] for p in PAIRS]), [p["en"] for p in PAIRS]
    lexicon = Lexicon([p["es"] for p in PAIRS], [p["en"] for p in PAIRS])
    allowed = {w.lower() for s in ("el", "perro", "es", "grande")
               for w, _ in lexicon.options(s, 2)}
    out = task.translate(["el perro es grande", "¡el perro!"])
    assert out[0] and all(w.lower() in allowed for w in out[0].split())  # each word an option of its source's
    assert "¡" not in out[1] and out[1].endswith("!")  # the Spanish opening mark is left out, the end kept
    assert task.test_report()["test/generation"]["decoding"].startswith("word lattice: 2 Dice-lexicon words")
    assert task.hparams.lattice["candidates"] == 2


def test_cli_lattice_flags_reach_the_model(backbone_dir, tmp_path):
    files = write_files(tmp_path)
    run_cli("translation", ["test", "--config", f"{ROOT}/configs/tasks/translation.yaml",
                            "--model.backbone", str(backbone_dir), "--data.data_files", json.dumps(files),
                            "--data.direction", "es-en", "--trainer.precision", "32",
                            "--trainer.default_root_dir", str(tmp_path / "run"),
                            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                            "--model.max_length", "96", "--data.batch_size", "2",
                            "--model.lattice.candidates", "2", "--model.lattice.drop_logp", "-6"])
    metrics = newest_metrics(tmp_path / "run")
    assert metrics["test/examples"] == len(PAIRS)
    assert metrics["test/generation"]["decoding"].startswith(
        "word lattice: 2 Dice-lexicon words per source word or none (drop -6.0)")


def test_the_bench_scores_translation_s_validation_split_by_bleu(backbone_dir, tmp_path):
    """The headline chooses by the main metric on validation: for translation that means decoding it, which a
    fit skips unless asked (score_validation)."""
    from tasks.bench import validation_scores

    files = write_files(tmp_path)
    args = ["--config", f"{ROOT}/configs/tasks/translation.yaml", "--model.backbone", str(backbone_dir),
            "--data.data_files", json.dumps(files), "--trainer.precision", "32", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
            "--model.generation", json.dumps(GEN), "--model.max_length", "48", "--data.batch_size", "2"]
    cli = run_cli("translation", args, run=False)
    assert {"val/bleu", "val/chrf"} <= validation_scores(cli).keys()


def test_a_saved_task_keeps_no_run_settings(backbone_dir, tmp_path):
    """engine and compile_steps say how one run decodes, not what was trained: a task saved from a run on
    llama.cpp or with compiled steps loads as a plain gptsuite task (where llama-cpp-python is not installed)."""
    task = translator(backbone_dir, compile_steps=True)
    save_task(task, tmp_path / "task")
    saved = json.loads((tmp_path / "task" / "task.json").read_text())["hparams"]
    assert "compile_steps" not in saved and "engine" not in saved and saved["quantize"] == task.hparams.quantize
    again = load_task(tmp_path / "task")
    assert (again.inference_model.engine, again.inference_model.compile_steps) == ("gptsuite", False)
