"""Code generation (HumanEval / MBPP): a sandbox for model-written programs and the pass@k estimator."""
