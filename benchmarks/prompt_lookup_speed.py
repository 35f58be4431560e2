"""Prompt-lookup decoding against plain greedy decoding, same backbone, same prompts: tokens/s and whether
the texts are identical.

    python benchmarks/prompt_lookup_speed.py [--backbone artifacts/backbones/smollm2-135m] [--repeats 2]

The prompts make the model copy from its input (an extractive answer with its sentence, a passage repeated
with one change, code rewritten), where guessing from the text pays; runs alternate between the two modes.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="artifacts/backbones/smollm2-135m")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--draft", type=int, default=8, help="guessed tokens per step")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    from backbone.artifact import load_backbone
    from backbone.generate import GenerationConfig, generate_text

    torch.set_num_threads(torch.get_num_threads())
    model, tokenizer = load_backbone(args.backbone)
    model.eval()
    plain = GenerationConfig(max_new_tokens=args.max_new_tokens)
    looked = plain.replace(prompt_lookup=args.draft)
    rates = {"greedy": [], "prompt lookup": []}
    same = True
    with torch.inference_mode():
        generate_text(model, tokenizer, [PROMPTS[0]], plain.replace(max_new_tokens=4))  # warm-up
        for _ in range(args.repeats):
            for name, cfg in (("greedy", plain), ("prompt lookup", looked)):
                tokens, seconds, texts = 0, 0.0, []
                for p in PROMPTS:
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
    print(f"backbone {args.backbone}, {torch.get_num_threads()} threads, fp32, {len(PROMPTS)} prompts x "
          f"{args.max_new_tokens} new tokens, median of {args.repeats}")
    print(f"greedy {g:.1f} tok/s, prompt lookup (draft {args.draft}) {p:.1f} tok/s: {p / g:.2f}x; "
          f"identical texts: {same}")
    for text in reference:
        print("  ", repr(text[:100]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
