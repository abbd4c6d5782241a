"""Inference-only form of one factor set's fine-tuned PrCRS ensembles: the same function as
networks.PrCRS in eval mode, in fewer and larger operations (scoring.probabilities uses it).

What changes, none of it in how models are trained or saved:
- the ensemble members run side by side: their weights are stacked on a leading member
  axis M, so each layer is one batched matrix product for all members;
- the input scatter and the conv embedding are one linear map from the 2L encoded inputs
  (values, observed flags) to the T x C embedding;
- each ScaleBias is folded into the linear layer that follows it (attention's input
  projection, the feed-forward's first layer, the conv module's first pointwise conv);
- the pointwise convs are linear layers on the (B, T, C) layout (no transposes), the
  depthwise convs three shifted multiply-adds, attention is scaled_dot_product_attention;
- the U-Net's up-projection runs before the upsampling (one row per pair, same values);
- every horizon's heads run as one product, and softmax(logits)[:, 1] is
  sigmoid(logit1 - logit0).

Axes as in networks.py, plus M = ensemble members and K = horizons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from prcrs_batch.modeling.networks import PrCRS


def _stack(tensors: Sequence[Any]) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors]).contiguous()


def _taps(weights: list[Any]) -> list[torch.Tensor]:
    """Depthwise Conv1d weights (C, 1, k) of M members -> k taps of shape (M, 1, 1, C)."""
    stacked = _stack([w[:, 0, :].T for w in weights])  # (M, k, C)
    return [stacked[:, j, None, None, :].contiguous() for j in range(stacked.shape[1])]


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-member linear layer: x (M, ..., I), w (M, I, O), b (M, 1, O) -> (M, ..., O)."""
    shape = x.shape
    out = torch.baddbmm(b, x.reshape(shape[0], -1, shape[-1]), w)
    return out.view(*shape[:-1], w.shape[-1])


def _folded(weights: list[Any], biases: list[Any], sbs: list[Any]) -> tuple:
    """Linear(x * scale + bias) as one linear layer per member: (M, I, O), (M, 1, O)."""
    w = [wt * sb.scale[None, :] for wt, sb in zip(weights, sbs)]  # (O, I) * (I,)
    b = [bt + wt @ sb.bias for wt, bt, sb in zip(weights, biases, sbs)]
    return _stack([t.T for t in w]), _stack(b).unsqueeze(1)


class _Block:
    """One SqueezeBlock position of the U-Net, for all M members."""

    def __init__(self, blocks: list[Any]):  # SqueezeBlock of each member
        first = blocks[0]
        self.heads = first.attn.num_heads
        self.qkv = _folded(
            [b.attn.in_proj_weight for b in blocks],
            [b.attn.in_proj_bias for b in blocks],
            [b.sb[0] for b in blocks],
        )
        self.out = (
            _stack([b.attn.out_proj.weight.T for b in blocks]),
            _stack([b.attn.out_proj.bias for b in blocks]).unsqueeze(1),
        )
        self.ff = [self._ff([getattr(b, name) for b in blocks], [b.sb[i] for b in blocks])
                   for name, i in (("ff1", 1), ("ff2", 3))]  # fmt: skip
        self.pw1 = _folded(
            [b.conv.pw1.weight[:, :, 0] for b in blocks],
            [b.conv.pw1.bias for b in blocks],
            [b.sb[2] for b in blocks],
        )
        self.dw = _taps([b.conv.dw.weight for b in blocks])
        self.dw_bias = _stack([b.conv.dw.bias for b in blocks])[:, None, None, :]
        self.pw2 = (
            _stack([b.conv.pw2.weight[:, :, 0].T for b in blocks]),
            _stack([b.conv.pw2.bias for b in blocks]).unsqueeze(1),
        )
        self.ln = [
            (
                _stack([b.ln[i].weight for b in blocks])[:, None, None, :],
                _stack([b.ln[i].bias for b in blocks])[:, None, None, :],
                float(first.ln[i].eps),
            )
            for i in range(4)
        ]

    @staticmethod
    def _ff(ffs: list, sbs: list) -> tuple:
        w1, b1 = _folded([f.net[0].weight for f in ffs], [f.net[0].bias for f in ffs], sbs)
        w2 = _stack([f.net[3].weight.T for f in ffs])
        b2 = _stack([f.net[3].bias for f in ffs]).unsqueeze(1)
        return w1, b1, w2, b2

    def _norm(self, x: torch.Tensor, i: int) -> torch.Tensor:
        weight, bias, eps = self.ln[i]
        return torch.addcmul(bias, F.layer_norm(x, x.shape[-1:], eps=eps), weight)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        M, B, T, C = x.shape
        qkv = _linear(x, *self.qkv).view(M * B, T, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (MB, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v)  # (MB, H, T, D)
        return _linear(y.transpose(1, 2).reshape(M, B, T, C), *self.out)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        x = F.glu(_linear(x, *self.pw1), dim=-1)  # (M, B, T, C)
        k, T = len(self.dw), x.shape[2]
        padded = F.pad(x, (0, 0, k // 2, k // 2))
        y = self.dw_bias + padded[:, :, :T] * self.dw[0]
        for j in range(1, k):
            y = y.addcmul_(padded[:, :, j : j + T], self.dw[j])
        return _linear(F.silu(y), *self.pw2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self._norm(x + self._attention(x), 0)
        w1, b1, w2, b2 = self.ff[0]
        x = self._norm(x + _linear(F.silu(_linear(x, w1, b1)), w2, b2), 1)
        x = self._norm(x + self._conv(x), 2)
        w1, b1, w2, b2 = self.ff[1]
        return self._norm(x + _linear(F.silu(_linear(x, w1, b1)), w2, b2), 3)


class FusedEnsemble:
    """One factor set: M PrCRS members' frozen bodies and each horizon's M heads.

    `members[k]` lists horizon k's members; all must share the body weights member by
    member and the config (scoring._shares_body checks the manifest's side of that).
    """

    def __init__(self, members: Sequence[Sequence[PrCRS]]):
        bodies = list(members[0])
        config = bodies[0].config
        if config.arch != "prcrs" or config.embed_kernel % 2 == 0:
            raise ValueError("FusedEnsemble supports the PrCRS network with an odd embed kernel")
        self.config = config
        self.n_members = len(bodies)
        self.n_inputs = len(config.input_slots)
        with torch.no_grad():
            self._embedding(bodies)
            self.pre = [_Block([b.pre[i] for b in bodies]) for i in range(len(bodies[0].pre))]
            self.mid = [_Block([b.mid[i] for b in bodies]) for i in range(len(bodies[0].mid))]
            self.post = [_Block([b.post[i] for b in bodies]) for i in range(len(bodies[0].post))]
            self.down = _taps([b.down.weight for b in bodies])
            self.down_bias = _stack([b.down.bias for b in bodies])[:, None, None, :]
            self.up = (
                _stack([b.up_proj.weight.T for b in bodies]),
                _stack([b.up_proj.bias for b in bodies]).unsqueeze(1),
            )
            self._heads(members)

    def _embedding(self, bodies: list[Any]) -> None:
        """scatter + conv as one (2L, T*C) matrix per member: the conv of each unit input."""
        L, S = self.n_inputs, self.config.n_slots
        basis = torch.zeros(2 * L, 2, S, dtype=torch.float64)
        slots = torch.tensor(self.config.input_slots)
        basis[torch.arange(L), 0, slots] = 1.0  # value of input l
        basis[L + torch.arange(L), 1, slots] = 1.0  # observed flag of input l
        mats, biases = [], []
        for b in bodies:
            conv = b.embed.conv
            w = conv.weight.double()
            pad, stride = conv.padding[0], conv.stride[0]
            out = F.conv1d(basis, w, None, stride=stride, padding=pad)  # (2L, C, T)
            mats.append(out.transpose(1, 2).reshape(2 * L, -1).float())  # (2L, T*C)
            biases.append(conv.bias)
        self.embed = _stack(mats)  # (M, 2L, T*C)
        self.embed_bias = _stack(biases)[:, None, None, :]  # (M, 1, 1, C)
        self.pos = _stack([b.embed.pos[0] for b in bodies]).unsqueeze(1)  # (M, 1, T, C)

    def _heads(self, members: Sequence[Sequence[PrCRS]]) -> None:
        """Every horizon's first layers side by side; second layers as logit differences."""
        first: list[list[Any]] = [[m.head[0] for m in horizon] for horizon in members]  # [K][M]
        last: list[list[Any]] = [[m.head[3] for m in horizon] for horizon in members]
        M = self.n_members
        self.h1 = _stack([torch.cat([h[k].weight for h in first]).T for k in range(M)])
        self.h1_bias = _stack([torch.cat([h[k].bias for h in first]) for k in range(M)])
        self.h1_bias = self.h1_bias.unsqueeze(1)  # (M, 1, K*d)
        diff = [[lin.weight[1] - lin.weight[0] for lin in h] for h in last]  # [K][M] (d,)
        self.h2 = _stack([torch.stack([diff[j][k] for j in range(len(members))]) for k in range(M)])
        self.h2_bias = _stack(
            [torch.stack([h[k].bias[1] - h[k].bias[0] for h in last]) for k in range(M)]
        )  # (M, K)

    def to(self, device: torch.device) -> FusedEnsemble:
        for name, value in vars(self).items():
            setattr(self, name, _moved(value, device))
        return self

    def features(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """(B, L) encoded inputs -> (M, B, 2C + 2L): every member's readout ("skip")."""
        obs = observed.to(values.dtype)
        inputs = torch.cat([values * obs, obs], dim=1)  # (B, 2L)
        M, B = self.n_members, values.shape[0]
        x = torch.matmul(inputs, self.embed).view(M, B, -1, self.embed_bias.shape[-1])
        x = F.relu(x + self.embed_bias) + self.pos  # (M, B, T, C)
        for block in self.pre:
            x = block(x)
        skip, T = x, x.shape[2]
        k = len(self.down)
        padded = F.pad(x, (0, 0, k // 2, k // 2))
        half = (T + 2 * (k // 2) - k) // 2 + 1  # stride 2
        y = self.down_bias + padded[:, :, 0 : 2 * half - 1 : 2] * self.down[0]
        for j in range(1, k):
            y = y.addcmul_(padded[:, :, j : j + 2 * half - 1 : 2], self.down[j])
        for block in self.mid:
            y = block(y)
        x = skip + _linear(y, *self.up).repeat_interleave(2, dim=2)[:, :, :T]
        for block in self.post:
            x = block(x)
        if self.config.readout == "mean":
            return x.mean(dim=2)
        return torch.cat([x.mean(dim=2), x.amax(dim=2), inputs.expand(M, -1, -1)], dim=2)

    def probabilities(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """(B, L) encoded inputs -> (K, B) ensemble probability of class 1 per horizon."""
        read = self.features(values, observed)  # (M, B, n_read)
        M, B, K = self.n_members, values.shape[0], self.h2.shape[1]
        hidden = F.relu(torch.baddbmm(self.h1_bias, read, self.h1)).view(M, B, K, -1)
        logit = (hidden * self.h2.unsqueeze(1)).sum(-1) + self.h2_bias.unsqueeze(1)  # (M, B, K)
        return torch.sigmoid(logit).mean(0).T  # (K, B)


def _moved(value: object, device: torch.device) -> object:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_moved(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(_moved(v, device) for v in value)
    if isinstance(value, _Block):
        for name, inner in vars(value).items():
            setattr(value, name, _moved(inner, device))
    return value
