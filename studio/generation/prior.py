"""A small causal Transformer prior over VQ-VAE code sequences, with temperature / top-k / top-p sampling,
priming by a prompt, and windowed sampling for outputs longer than its context."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PriorConfig:
    vocab: int = 512  # = the VQ-VAE's codebook size
    context: int = 256  # codes (about 12 s at 21.5 codes/s)
    width: int = 256  # Transformer width
    layers: int = 4  # Transformer blocks
    heads: int = 4  # attention heads (dividing width)
    dropout: float = 0.1  # attention and MLP dropout


class Block(nn.Module):
    def __init__(self, c: PriorConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.width), nn.LayerNorm(c.width)
        self.qkv = nn.Linear(c.width, 3 * c.width)
        self.proj = nn.Linear(c.width, c.width)
        self.mlp = nn.Sequential(nn.Linear(c.width, 4 * c.width), nn.GELU(), nn.Linear(4 * c.width, c.width))
        self.heads, self.dropout = c.heads, c.dropout

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + F.dropout(self.proj(a.transpose(1, 2).reshape(B, T, C)), self.dropout, self.training)
        return x + F.dropout(self.mlp(self.ln2(x)), self.dropout, self.training)


class Prior(nn.Module):
    """Codes ``[B, T]`` (T <= context) -> next-code logits ``[B, T, vocab]``. A start token precedes every window."""

    def __init__(self, config: PriorConfig = PriorConfig()):
        super().__init__()
        c = self.config = config
        self.start = c.vocab  # extra token id
        self.tok = nn.Embedding(c.vocab + 1, c.width)
        self.pos = nn.Embedding(c.context + 1, c.width)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.vocab, bias=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits for positions 0..T (position i predicts code i given codes < i); input gets the start token."""
        start = torch.full((codes.shape[0], 1), self.start, dtype=torch.long, device=codes.device)
        x = torch.cat([start, codes.long()], dim=1)
        x = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        x = F.dropout(x, self.config.dropout, self.training)  # (residual and embedding dropout: the 14-min prior overfit)
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean next-code cross-entropy (nats) of ``codes [B, T]``."""
        logits = self(codes[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))

    @torch.no_grad()
    def sample(self, length: int, *, prompt: torch.Tensor | None = None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``[1, length]`` codes. ``prompt [1, P]`` codes are kept as the first P. Beyond the context the window
        slides: each new code is drawn given the most recent ``context - 1`` codes."""
        c = self.config
        dev = self.head.weight.device
        out = prompt.to(dev) if prompt is not None else torch.zeros(1, 0, dtype=torch.long, device=dev)
        while out.shape[1] < length:
            window = out[:, -(c.context - 1):]
            # one forward per new code; at these sizes that is fast enough without a KV cache
            logits = self(window)[:, -1].float()
            logits = logits / max(temperature, 1e-4)
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if top_p is not None and top_p < 1.0:
                sorted_logits, idx = torch.sort(logits, descending=True)
                cum = torch.softmax(sorted_logits, -1).cumsum(-1)
                remove = cum - torch.softmax(sorted_logits, -1) > top_p
                logits = logits.scatter(1, idx, sorted_logits.masked_fill(remove, float("-inf")))
            probs = torch.softmax(logits, -1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(dev)
            out = torch.cat([out, nxt], dim=1)
        return out[:, :length]
