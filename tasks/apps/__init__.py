"""Applications built on the backbone and the tasks, each usable from Python, the CLI and the demo:

    quality     what a generated text is like: distinct-n, repetition, self-BLEU, perplexity under a judge
    sweep       creativity against coherence: decoding settings swept, measured and plotted
    article     article writing, section by section from a title or an outline, with the instruct backbone
    safety      moderation of prompts and outputs, and the block list that keeps words out of generation
"""
