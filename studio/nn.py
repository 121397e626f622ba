"""Small layers shared by several models: weight-normed convolutions and the dilated residual stack."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrisation by its plain weight (for inference); returns ``module``."""
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


def conv(cin: int, cout: int, kernel: int, *, dilation: int = 1, norm: bool = True, **kw) -> nn.Conv1d:
    """A 1-D conv, weight-normed unless ``norm`` is False (used by the ablations)."""
    c = nn.Conv1d(cin, cout, kernel, dilation=dilation, **kw)
    return weight_norm(c) if norm else c


class ResidualBlock(nn.Module):
    """LeakyReLU -> reflect-padded dilated 3-tap conv -> LeakyReLU -> 1x1 conv, plus a learned 1x1 shortcut.

    ``[B, C, T] -> [B, C, T]``.
    """

    def __init__(self, channels: int, dilation: int, *, norm: bool = True):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            conv(channels, channels, 3, dilation=dilation, norm=norm),
            nn.LeakyReLU(0.2),
            conv(channels, channels, 1, norm=norm),
        )
        self.shortcut = conv(channels, channels, 1, norm=norm)

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


def residual_stack(channels: int, dilations=(1, 3, 9), *, norm: bool = True) -> nn.Sequential:
    """The paper's stack: one ``ResidualBlock`` per dilation, receptive field growing 1 -> 3 -> 9."""
    return nn.Sequential(*(ResidualBlock(channels, d, norm=norm) for d in dilations))


def to_2d(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T]`` -> ``[B, C, 1, T]`` in channels-last memory (the layout ``forward_2d`` works in)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def freeze_2d(module: nn.Module) -> nn.Module:
    """For inference: store each conv's weight once as a channels-last 4-D tensor for ``forward_2d`` (saves a
    reorder per call; ~5% here). Call again after changing the weights or their dtype."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            m.weight_2d = m.weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
    return module


def _weight_2d(m: nn.Module) -> torch.Tensor:
    w = getattr(m, "weight_2d", None)
    return w if w is not None else m.weight.unsqueeze(2)


def forward_2d(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module`` (1-D convs, transposed convs, reflection pads, ``ResidualBlock``s and elementwise layers, nested in
    ``nn.Sequential``) applied to ``x`` ``[B, C, 1, T]`` as the same operations in 2-D, with the module's own
    (possibly weight-normed) parameters, so gradients reach them as usual.

    Why: on a CPU, oneDNN reorders 1-D (NCW) activations to its blocked layout and back at every layer, while 2-D
    channels-last keeps one layout end to end. Measured here (2-core Zen 4): MelGAN generator inference 1.8x
    faster in bf16, 1.2x in fp32; its training forward + backward 1.2x faster.
    """
    if isinstance(module, nn.Sequential):
        for m in module:
            x = forward_2d(m, x)
        return x
    if isinstance(module, ResidualBlock):
        return forward_2d(module.shortcut, x) + forward_2d(module.block, x)
    if isinstance(module, nn.ReflectionPad1d):
        left, right = module.padding
        return F.pad(x, (left, right, 0, 0), mode="reflect")
    if isinstance(module, nn.Conv1d):
        return F.conv2d(x, _weight_2d(module), module.bias, (1, module.stride[0]), (0, module.padding[0]),
                        (1, module.dilation[0]), module.groups)
    if isinstance(module, nn.ConvTranspose1d):
        return F.conv_transpose2d(x, _weight_2d(module), module.bias, (1, module.stride[0]),
                                  (0, module.padding[0]), (0, module.output_padding[0]), module.groups,
                                  (1, module.dilation[0]))
    if isinstance(module, (nn.LeakyReLU, nn.Tanh, nn.ReLU, nn.Identity)):
        return module(x)
    raise TypeError(f"forward_2d does not know {type(module).__name__}")


def conv1d_space_to_depth(module: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for a strided (grouped) 1-D conv, computed as a stride-1 conv on the polyphase input.

    With stride s, tap k = s*q + r reads x[s*(t + q) + r - pad]: regrouping the input as ``[B, C*s, T/s]`` (phase r
    into the channels) and the weight as ``[O, C_g*s, ceil(K/s)]`` gives the same sums with s-times more channels
    per group and no stride. Why: oneDNN runs the MelGAN discriminator's stride-4 convs with 4 channels per group
    far below the CPU's peak; as stride-1 convs with 16 channels per group their forward + backward are 1.7-2.2x
    faster here in bf16 (2-core Zen 4; the last, 32-frame layer is even). Same parameters, so gradients reach
    them as usual; equal to ``module(x)`` up to float rounding.
    """
    (s,), (pad,), (K,) = module.stride, module.padding, module.kernel_size
    if s == 1 or module.dilation[0] != 1 or module.padding_mode != "zeros":
        return module(x)
    B, C, _ = x.shape
    q = -(-K // s)
    extra = q * s - K  # zero taps appended so that the kernel splits into whole phases
    x = F.pad(x, (pad, pad + extra))
    n = x.shape[-1] // s
    x = x[..., : n * s].reshape(B, C, n, s).transpose(2, 3).reshape(B, C * s, n)  # channel c*s + r
    w = module.weight
    w = F.pad(w, (0, extra)).reshape(w.shape[0], w.shape[1], q, s).transpose(2, 3).reshape(w.shape[0], -1, q)
    return F.conv1d(x, w, module.bias, groups=module.groups)


def chunked(fn, x: torch.Tensor, chunk: int, left: int, right: int | None = None, scale: int = 1,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """Apply a convolutional ``fn`` (``[..., T] -> [..., T * scale]``) to a long ``x`` in chunks of ``chunk`` frames.

    Each chunk is processed with ``left`` / ``right`` (default: ``left``) frames of real input around it and only
    its own part of the output is kept, so the result equals one call on the whole input wherever the context
    covers the receptive field (no seams), with memory bounded by ``chunk + left + right``. ``out``: a tensor to
    write the result into (e.g. a CPU buffer for a GPU model). Keep ``chunk`` and the context multiples of any
    stride ``fn`` needs.
    """
    right = left if right is None else right
    T = x.shape[-1]
    if out is None and T <= chunk + left + right:
        return fn(x)
    for start in range(0, T, chunk):
        end = min(T, start + chunk)
        a, b = max(0, start - left), min(T, end + right)
        y = fn(x[..., a:b])
        if out is None:
            out = y.new_empty(*y.shape[:-1], T * scale)
        out[..., start * scale: end * scale] = y[..., (start - a) * scale: (end - a) * scale]
    return out
