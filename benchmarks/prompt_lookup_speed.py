"""Prompt-lookup decoding against plain greedy decoding, same backbone, same prompts: tokens/s and whether
the texts are identical.

    python benchmarks/prompt_lookup_speed.py [--set copy|squad|bible] [--n 20] [--repeats 2]

Sets: `copy`, three prompts that make the model copy from its input (a quoted answer, a passage with one
change, code rewritten); `squad`, the first n of a seeded sample of SQuAD v1.1 dev questions in the QA task's
generated-answer prompt (answers end at a newline); `bible`, the first n Bible test verses in the
translation task's prompt (English to Spanish). Runs alternate between the two modes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

PROMPTS = [
    "Read the passage and answer by quoting the sentence that holds the answer.\n\nPassage: The Eiffel Tower "
    "is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after the engineer "
    "Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. Locally nicknamed La dame "
    "de fer, it was constructed as the centrepiece of the 1889 World's Fair.\n\nQuestion: Who designed and "
    "built the tower?\nSentence:",
    "Copy the text below, replacing every 'cat' with 'dog'.\n\nText: The cat sat on the mat. The cat was "
    "happy because the mat was warm, and the cat liked warm mats more than anything.\n\nResult:",
    "Rename the variable x to total in this function and repeat it.\n\ndef add_all(values):\n    x = 0\n    "
    "for v in values:\n        x = x + v\n    return x\n\nRenamed:\n",
]


def prompts_and_config(name: str, n: int, tokenizer, max_new_tokens: int):
    """The prompts of a set and the decoding its task uses (greedy here, the task's stop and length)."""
    from backbone.generate import GenerationConfig

    if name == "copy":
        return PROMPTS, GenerationConfig(max_new_tokens=max_new_tokens)
    from backbone.data.loaders import load_benchmark

    if name == "squad":
        from tasks.qa.data import generation_prompt

        dev = load_benchmark("squad")["validation"].shuffle(seed=0).select(range(n))
        prompts = [generation_prompt(tokenizer, q, c, 2048 - 32) for q, c in zip(dev["question"], dev["context"])]
        return prompts, GenerationConfig(max_new_tokens=32, stop=("\n",))
    import inspect

    from tasks.translation.module import Translator

    template = inspect.signature(Translator.__init__).parameters["source_template"].default
    verses = load_benchmark("bible_en_es")["test"].select(range(n))
    prompts = [template.format(source_lang="English", target_lang="Spanish", src=v.strip()) for v in verses["en"]]
    return prompts, GenerationConfig(max_new_tokens=96, stop=("\n",))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="artifacts/backbones/smollm2-135m")
    parser.add_argument("--set", default="copy", choices=["copy", "squad", "bible"])
    parser.add_argument("--n", type=int, default=20, help="prompts of the squad and bible sets")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--draft", type=int, default=8, help="guessed tokens per step")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    from backbone.artifact import load_backbone
    from backbone.generate import generate_text

    model, tokenizer = load_backbone(args.backbone)
    model.eval()
    prompts, plain = prompts_and_config(args.set, args.n, tokenizer, args.max_new_tokens)
    looked = plain.replace(prompt_lookup=args.draft)
    rates = {"greedy": [], "prompt lookup": []}
    same = True
    with torch.inference_mode():
        generate_text(model, tokenizer, [prompts[0]], plain.replace(max_new_tokens=4))  # warm-up
        for _ in range(args.repeats):
            for name, cfg in (("greedy", plain), ("prompt lookup", looked)):
                tokens, seconds, texts = 0, 0.0, []
                for p in prompts:
                    start = time.perf_counter()
                    text = generate_text(model, tokenizer, [p], cfg)[0]
                    seconds += time.perf_counter() - start
                    tokens += len(tokenizer.encode(text))
                    texts.append(text)
                rates[name].append(tokens / seconds)
                if name == "greedy":
                    reference = texts
                else:
                    same = same and texts == reference
    g, p = statistics.median(rates["greedy"]), statistics.median(rates["prompt lookup"])
    print(f"backbone {args.backbone}, {torch.get_num_threads()} threads, fp32, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, set {args.set}: {len(prompts)} prompts, at most "
          f"{plain.max_new_tokens} new tokens, median of {args.repeats}")
    print(f"greedy {g:.1f} tok/s, prompt lookup (draft {args.draft}) {p:.1f} tok/s: {p / g:.2f}x; "
          f"identical texts: {same}")
    for text in reference[:3]:
        print("  ", repr(text[:100]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
