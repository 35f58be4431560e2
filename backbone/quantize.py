"""Weight-only quantisation of a GPT for fast CPU decoding: int8 per output channel, or int4 in groups of 32.

Why it pays. Decoding one token at batch 1 multiplies a vector by every weight matrix once: the time is
the time to read the weights from memory (SmolLM2-135M: 540 MB in fp32, about 36 ms at 15 GB/s), not the
arithmetic. Fewer bytes per weight is fewer milliseconds per token.

    int8   w = s_n * q,            q in [-127, 127], one scale s_n per output row          (1 byte / weight)
    int4   w = d_g * q + m_g,      q in [0, 15], a scale d_g and minimum m_g per group of  (0.5 byte + 1 byte
           32 input weights: llama.cpp's Q4_1 layout                                     per 32 / 32)

int4 applies to the blocks' linear layers; the LM head (tied to the token embedding in SmolLM2) is int8 in
both modes, and the embedding lookup reads the same int8 rows, so the tie and its memory saving are kept.
SmolLM2 is imported from a Q4_1 GGUF: its fp32 weights are exactly d * q + m, and requantising them in groups
of 32 recovers the GGUF's own 4-bit codes (tests/test_quantize.py checks this on the GGUF's blocks), so
int4 runs on the same weights llama.cpp does.

The matrix products are torch's own weight-only kernels (`_weight_int8pack_mm`,
`_weight_int4pack_mm_for_cpu`). They take bf16 or fp32 activations, cast once per product (the rest of the model
keeps its precision); which is faster depends on the CPU (benchmarks/decode-intel records the timing on a Xeon),
so quantize() times both once per process and machine, and keeps bf16 unless fp32 is clearly faster
(fastest_activation_dtype).
A quantised model is for inference: its weights are buffers, not parameters.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from backbone.perf import machine_fingerprint

MODES = ("none", "int8", "int4")
AUTO = "auto"  # measured: int4 where it is faster here, else none (choose_quantization)
CHOICES = (AUTO, *MODES)
# what each choice does: the one description of them, in the help of every command's --quantize
CHOICES_HELP = ("auto (int4 where a measured decode step is faster with it on this machine, else none), none, "
                "int8 (per row) or int4 (groups of 32, llama.cpp's Q4_1 layout)")
SPEEDUP_NEEDED = 1.1
GROUP_SIZE = 32  # llama.cpp's Q4_0/Q4_1 block
PACK_ROWS = 16  # torch's int4 packing takes output rows in tiles of 16
INT8_INPUT_MULTIPLE = 16  # torch's int8 kernel gives wrong values (or crashes) for other input widths


class QuantizationError(ValueError):
    """A model or layer that cannot be quantised as asked; the message says which and why."""


def kernels_available() -> bool:
    """torch's CPU weight-only kernels (int4 since torch 2.6)."""
    return all(hasattr(torch.ops.aten, name) for name in
               ("_weight_int8pack_mm", "_convert_weight_to_int4pack_for_cpu", "_weight_int4pack_mm_for_cpu"))


def int8_fits(weight: torch.Tensor) -> bool:
    return weight.shape[1] % INT8_INPUT_MULTIPLE == 0


ACTIVATION_DTYPES = (torch.bfloat16, torch.float32)  # what the weight-only kernels take as activations


def _flat(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.reshape(-1, x.size(-1)).to(dtype)  # (B*T, K): the kernels take 2-D activations


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 rows and one scale per row (symmetric, absmax / 127), the scales in the
    activations' dtype (bf16 or fp32: the kernel takes them alike)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 activation_dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        if not int8_fits(weight):
            raise QuantizationError(f"int8 needs the input width ({weight.shape[1]}) to be a multiple of "
                                    f"{INT8_INPUT_MULTIPLE}")
        w = weight.detach().float()  # (N, K)
        scale = (w.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)  # (N,)
        self.register_buffer("qweight", (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(activation_dtype))  # the kernel takes scales in the activations' dtype
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int8pack_mm(_flat(x, self.scale.dtype), self.qweight, self.scale)  # (B*T, N)
        y = y.view(*x.shape[:-1], self.out_features).to(x.dtype)
        return y if self.bias is None else y + self.bias

    def dequantized(self) -> torch.Tensor:
        return self.qweight.float() * self.scale.float()[:, None]  # (N, K)


class Int8Embedding(nn.Module):
    """Token lookup from an Int8Linear's rows (the tied LM head): row q_v * s_v."""

    def __init__(self, table: Int8Linear):
        super().__init__()
        self.table = [table]  # a list, so the shared buffers are not registered (or saved) twice

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = self.table[0]
        return F.embedding(idx, t.qweight).float() * t.scale[idx].float()[..., None]  # (B, T, C)


def int4_codes(weight: torch.Tensor, group_size: int = GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q4_1 quantisation of (N, K) weights: codes q (N, K) in [0, 15], scales d and minima m (N, K / g), with
    d = (max - min) / 15 and m = min over each group of g input weights, so that w ~ d * q + m."""
    N, K = weight.shape
    groups = weight.detach().float().view(N, K // group_size, group_size)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, K/g)
    scale = ((high - low) / 15).clamp(min=torch.finfo(torch.float32).tiny)
    codes = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).view(N, K)
    return codes, scale, low


def int4_fits(weight: torch.Tensor, group_size: int = GROUP_SIZE) -> bool:
    return weight.shape[1] % group_size == 0 and weight.shape[0] % PACK_ROWS == 0


class Int4Linear(nn.Module):
    """y = x W^T + b with W in 4-bit groups: w = d * q + m per group of `group_size` input weights.

    torch's kernel computes w = (q - 8) * scale + zero, so zero = m + 8 d; scales and zeros are kept as
    (K / g, N, 2) in the activations' dtype and the codes packed two per byte in the kernel's own layout.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, group_size: int = GROUP_SIZE,
                 activation_dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        N, K = weight.shape
        if not int4_fits(weight, group_size):
            raise QuantizationError(f"int4 needs the input width ({K}) to be a multiple of {group_size} and the "
                                    f"output width ({N}) a multiple of {PACK_ROWS}")
        codes, scale, low = int4_codes(weight, group_size)
        self.register_buffer("qweight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1))
        scales_and_zeros = torch.stack([scale.t(), (low + 8 * scale).t()], dim=-1)  # (K/g, N, 2)
        self.register_buffer("scales_and_zeros", scales_and_zeros.contiguous().to(activation_dtype))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.group_size, self.in_features, self.out_features = group_size, K, N

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(_flat(x, self.scales_and_zeros.dtype), self.qweight,
                                                       self.group_size,
                                                       self.scales_and_zeros)  # (B*T, N)
        y = y.view(*x.shape[:-1], self.out_features).to(x.dtype)
        return y if self.bias is None else y + self.bias

    def dequantized(self) -> torch.Tensor:
        """(N, K) weights as the kernel sees them: one product with the identity."""
        eye = torch.eye(self.in_features, dtype=self.scales_and_zeros.dtype)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.qweight, self.group_size,
                                                          self.scales_and_zeros).float().t()


def block_linears(model) -> list[tuple[nn.Module, str]]:
    """(parent, attribute) of every linear layer inside the transformer blocks. A layer that wraps one
    (an adapter such as LoRA) counts when it offers `merged() -> nn.Linear`, its update folded in."""
    return [(parent, name) for block in model.transformer.h for parent in (block.attn, block.mlp)
            for name, child in parent.named_children()
            if isinstance(child, nn.Linear) or callable(getattr(child, "merged", None))]


_activation_choice: dict[str, tuple[torch.dtype, str]] = {}


def fastest_activation_dtype() -> tuple[torch.dtype, str]:
    """(the activation dtype the weight-only kernels run faster with on this machine, why): a (1, 576) by
    (576 -> 1536) int4 product and a (1, 576) by (576 -> 49152) int8 one (SmolLM2's MLP and LM head), timed with
    bf16 and fp32 activations, best of 3 each after a warm-up; fp32 when it is SPEEDUP_NEEDED times faster, else
    bf16; measured once per machine in a process. A CPU without native bf16 (AVX2) may only emulate bf16; one
    with AVX-512 bf16 or AMX runs it natively."""
    key = str(machine_fingerprint("cpu"))
    if key not in _activation_choice:
        generator = torch.Generator().manual_seed(0)
        weights = [torch.randn(1536, 576, generator=generator), torch.randn(49152, 576, generator=generator)]
        seconds = {}
        for dtype in ACTIVATION_DTYPES:
            layers = [Int4Linear(weights[0], activation_dtype=dtype), Int8Linear(weights[1], activation_dtype=dtype)]
            x = torch.randn(1, 576, generator=generator)

            def product(layers=layers, x=x):
                start = time.perf_counter()
                for layer in layers:
                    layer(x)
                return time.perf_counter() - start

            product()
            seconds[dtype] = min(product() for _ in range(3))
        # bf16 (what the kernels were first used with) unless fp32 is clearly faster: near a tie, a choice that
        # flipped between runs would change int4's outputs from run to run
        fp32_wins = seconds[torch.float32] * SPEEDUP_NEEDED <= seconds[torch.bfloat16]
        best = torch.float32 if fp32_wins else torch.bfloat16
        times = ", ".join(f"{str(d).removeprefix('torch.')} {s * 1e3:.2f} ms" for d, s in seconds.items())
        _activation_choice[key] = (best, f"weight-only products with {times}: {str(best).removeprefix('torch.')}")
    return _activation_choice[key]


def quantize(model, mode: str, group_size: int = GROUP_SIZE, activation_dtype: torch.dtype | None = None):
    """Replace the model's linear layers by weight-only quantised ones, in place; returns the model.

    mode: "none" (unchanged), "int8" (every linear layer int8) or "int4" (block layers int4 in groups of
    `group_size`, the LM head int8). The token embedding reads the int8 LM head's rows when they are tied.
    A layer whose widths torch's kernels cannot take (int4: inputs in multiples of group_size and outputs of
    16; int8: inputs of 16) falls back from int4 to int8, or keeps its fp32 weights.
    activation_dtype: what the kernels take as activations (bf16 or fp32); None measures which is faster here
    (fastest_activation_dtype). model.activation_dtype records it.
    """
    if mode not in MODES:
        raise QuantizationError(f"quantize must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none":
        return model
    if not kernels_available():
        raise QuantizationError(f"torch {torch.__version__} lacks the weight-only CPU kernels (torch >= 2.6 has them)")
    if model.quantization != "none":
        raise QuantizationError(f"this model is already quantised ({model.quantization})")
    device = model.lm_head.weight.device
    if device.type != "cpu":
        raise QuantizationError(f"weight-only quantisation runs on the CPU kernels; the model is on {device}")
    if mode == "int4" and model.config.n_embd % group_size:
        raise QuantizationError(f"int4 needs n_embd ({model.config.n_embd}) to be a multiple of {group_size}")
    if activation_dtype is None:
        activation_dtype = fastest_activation_dtype()[0]
    elif activation_dtype not in ACTIVATION_DTYPES:
        raise QuantizationError(f"activation_dtype must be one of {ACTIVATION_DTYPES}, got {activation_dtype}")
    for parent, name in block_linears(model):
        linear = getattr(parent, name)
        linear = linear if isinstance(linear, nn.Linear) else linear.merged()
        if mode == "int4" and int4_fits(linear.weight, group_size):
            linear = Int4Linear(linear.weight, linear.bias, group_size, activation_dtype)
        elif int8_fits(linear.weight):  # int4 falls back to int8 where the kernel's shape rules allow it
            linear = Int8Linear(linear.weight, linear.bias, activation_dtype)
        setattr(parent, name, linear)  # else it stays an unquantised nn.Linear
    if int8_fits(model.lm_head.weight):
        model.lm_head = Int8Linear(model.lm_head.weight, activation_dtype=activation_dtype)
        if model.config.tie_embeddings:
            model.transformer.wte = Int8Embedding(model.lm_head)
    model.quantization = mode
    model.activation_dtype = activation_dtype
    for parameter in model.parameters():  # the norms' weights may be views into one storage that held every
        parameter.data = parameter.data.clone()  # fp32 weight (safetensors loads so): own theirs, free that
    release_freed_memory()
    return model.eval().requires_grad_(False)


def release_freed_memory() -> None:
    """Hand the freed fp32 weights back to the operating system. glibc keeps large freed blocks in its heap
    once it has raised its mmap threshold, so without this the process stays as large as before."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def weight_bytes(model) -> int:
    """Bytes of every parameter and buffer, each shared tensor counted once."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


@torch.no_grad()
def decode_step_seconds(model, steps: int = 4, rows: int = 1) -> float:
    """Seconds per cached decode step of `rows` rows after an 8-token prompt (one step of warm-up)."""
    prompt = torch.zeros(rows, 8, dtype=torch.long)
    cache = model.new_cache(rows, prompt.size(1) + steps + 1)
    model.lm_logits(model(prompt, cache=cache)[:, -1])
    token = prompt[:, :1]
    model.lm_logits(model(token, cache=cache)[:, -1])  # warm-up
    start = time.perf_counter()
    for _ in range(steps - 1):
        model.lm_logits(model(token, cache=cache)[:, -1])
    return (time.perf_counter() - start) / (steps - 1)


_auto_choices: dict[tuple, tuple[str, str]] = {}
_announced: set[str] = set()


def check_mode(requested: str) -> str:
    if requested not in CHOICES:
        raise QuantizationError(f"quantize must be {AUTO} or one of {', '.join(MODES)}, got {requested!r}")
    return requested


def _auto_choice(model) -> tuple[str, str, nn.Module | None]:
    """(mode, why, the int4 copy when it was built for the measurement now): int4 when a measured decode step
    is at least SPEEDUP_NEEDED times faster with it, else none. Measured once per model shape, device and
    machine in a process."""
    config, device = model.config, next(model.parameters()).device
    key = (str(machine_fingerprint("cpu")), repr(config), str(device))
    if key in _auto_choices:
        return (*_auto_choices[key], None)
    int4 = None
    if not kernels_available():
        _auto_choices[key] = ("none", f"torch {torch.__version__} lacks the weight-only CPU kernels")
    elif config.n_embd % GROUP_SIZE or device.type != "cpu":
        _auto_choices[key] = ("none", "int4 needs a CPU model whose width is a multiple of 32")
    else:
        was_training = model.training
        fp32_s = decode_step_seconds(model.eval())
        model.train(was_training)
        int4 = quantize(copy.deepcopy(model), "int4")
        int4_s = decode_step_seconds(int4)
        ratio = fp32_s / int4_s
        rates = (f"decode step {fp32_s * 1e3:.1f} ms unquantised vs {int4_s * 1e3:.1f} ms int4 ({ratio:.2g}x; "
                 f"{fastest_activation_dtype()[1]} activations)")
        _auto_choices[key] = (("int4", f"{rates}: int4 is faster here") if ratio >= SPEEDUP_NEEDED
                              else ("none", f"{rates}: int4 is not {SPEEDUP_NEEDED}x faster here"))
    return (*_auto_choices[key], int4)


def choose_quantization(model) -> tuple[str, str]:
    """auto's choice for this model on this machine: (mode, why)."""
    return _auto_choice(model)[:2]


def _announce(mode: str, why: str) -> None:
    if why not in _announced:
        _announced.add(why)
        print(f"quantize auto -> {mode}: {why}", file=sys.stderr)


def inference_model(model, requested: str, copy_model: bool = True):
    """(the model to decode with, the mode it runs in). "none" is `model` itself; int8 / int4 a quantised
    copy with adapters merged in (or `model` quantised in place when copy_model is False, for a model
    loaded only to decode); "auto" keeps whichever it measured faster, reusing the int4 model it timed."""
    built = None
    if check_mode(requested) == AUTO:
        mode, why, built = _auto_choice(model)
        _announce(mode, why)
    else:
        mode = requested
    if mode == "none":
        return model, mode
    if built is not None:
        return built, mode
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise QuantizationError(f"weight-only quantisation runs on the CPU kernels; the model is on {device}")
    return quantize(copy.deepcopy(model) if copy_model else model, mode), mode
