"""The attention-flow span head (BiDAF, Seo et al. 2017) for the context-first layout (tasks.qa.packing).

In that layout the context's states have not seen the question, so the head matches them. With context
token states c_i and question token states q_j (both projected to width d):

    similarity     S_ij = w_c . c_i + w_q . q_j + (c_i * w_cq) . q_j                       (Tc, Tq)
    context->question  a_i = sum_j softmax_j(S_ij) q_j          what in the question c_i matches
    question->context  h = sum_i softmax_i(max_j S_ij) c_i      the context tokens most relevant to the question
    G_i = [c_i; a_i; c_i * a_i; c_i * h]                        (Tc, 4d)

then modeling layers that see both sides (tasks.heads.BidirectionalLayer: a BiLSTM, or a bidirectional
transformer layer) give M1 and M2, and

    start_i = w_s . [G_i; M1_i],   end_i = w_e . [G_i; M2_i]

(the end reads one layer more than the start, as in BiDAF; with `layers=1`, M2 = M1, for about half the
training time). The question's states have read the whole
context (it comes first), so they carry what the context says about the question as well.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tasks.heads import BidirectionalLayer


class AttentionFlowHead(nn.Module):
    """(R, Tc, C) context and (R, Tq, C) question states with their masks -> (R, Tc, 2) start / end logits.
    Chosen in YAML before the backbone is loaded: `build(n_embd)` makes its layers (tasks.qa.span reads it).

    Args:
        width: d, the projection both sides share.
        modeling: "bilstm" or "transformer" (tasks.heads.BidirectionalLayer), each modeling layer.
        hidden: the modeling layers' width (per direction for the BiLSTM).
        dropout: on the projected states only. The modeling layers run without it: on a CPU, drawing masks
            for their wide activations cost more than the layers themselves, and in a 25-minute trial on
            10,000 SQuAD questions the head without them scored higher (66.7 F1 against 60.6 with dropout on G
            and M1, though that run also trained for less time).
        layers: 2 (the end reads a second modeling layer over the first) or 1 (start and end read one).
    """

    def __init__(self, width: int = 160, modeling: Literal["bilstm", "transformer"] = "bilstm", hidden: int = 128,
                 dropout: float = 0.15, layers: int = 2):
        super().__init__()
        if modeling not in ("bilstm", "transformer"):
            raise ValueError(f"modeling must be 'bilstm' or 'transformer', got {modeling!r}")
        if layers not in (1, 2):
            raise ValueError(f"layers must be 1 or 2, got {layers}")
        self.width, self.modeling, self.hidden, self.dropout, self.layers = width, modeling, hidden, dropout, layers
        self.proj: nn.Linear | None = None
        self.dropout_layer = nn.Dropout(dropout)
        self.w_c: nn.Linear | None = None
        self.w_q: nn.Linear | None = None
        self.w_cq: nn.Parameter | None = None
        self.model1: BidirectionalLayer | None = None
        self.model2: BidirectionalLayer | None = None
        self.start: nn.Linear | None = None
        self.end: nn.Linear | None = None

    def build(self, n_embd: int) -> None:
        """Make the layers for states n_embd wide."""
        width = self.width
        self.proj = nn.Linear(n_embd, width)
        self.w_c = nn.Linear(width, 1)
        self.w_q = nn.Linear(width, 1, bias=False)
        self.w_cq = nn.Parameter(torch.full((width,), width**-0.5))
        self.model1 = BidirectionalLayer(self.modeling, 4 * width, self.hidden, 0.0)
        if self.layers == 2:
            self.model2 = BidirectionalLayer(self.modeling, self.model1.out_dim, self.hidden, 0.0)
        self.start = nn.Linear(4 * width + self.model1.out_dim, 1)
        self.end = nn.Linear(4 * width + self.model1.out_dim, 1)  # BidirectionalLayer keeps the width

    def forward(self, context: torch.Tensor, context_mask: torch.Tensor, question: torch.Tensor,
                question_mask: torch.Tensor) -> torch.Tensor:
        c = self.dropout_layer(F.gelu(self.proj(context)))  # (R, Tc, d)
        q = self.dropout_layer(F.gelu(self.proj(question)))  # (R, Tq, d)
        S = self.w_c(c) + self.w_q(q).transpose(1, 2) + (c * self.w_cq) @ q.transpose(1, 2)  # (R, Tc, Tq)
        lowest = torch.finfo(S.dtype).min  # finite: a row of masked scores still softmaxes without NaN
        S = S.masked_fill(~question_mask[:, None, :], lowest)
        a = S.softmax(-1) @ q  # (R, Tc, d) context -> question
        b = S.max(-1).values.masked_fill(~context_mask, lowest).softmax(-1)  # (R, Tc)
        h = (b[:, :, None] * c).sum(1, keepdim=True)  # (R, 1, d) question -> context
        G = torch.cat([c, a, c * a, c * h], dim=-1)  # (R, Tc, 4d)
        M1 = self.model1(G, context_mask)
        M2 = self.model2(M1, context_mask) if self.model2 is not None else M1
        start = self.start(torch.cat([G, M1], -1))
        end = self.end(torch.cat([G, M2], -1))
        return torch.cat([start, end], dim=-1)  # (R, Tc, 2)
