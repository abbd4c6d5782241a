"""PrCRS and its two published baselines, in one file.

References:
1) the PrCRS paper (../shared/paper/prcrs-paper.txt): conv embedding of the lab vector,
   a temporal U-Net around Squeezeformer blocks, mean pooling, two linear layers;
2) Squeezeformer, Kim et al. 2022 (arXiv:2206.00888): MF/CF blocks, post-LayerNorm with a
   learned scale-and-bias on each module input instead of pre-LayerNorm, temporal U-Net.

Axes: B = batch, L = the model's inputs, S = analyte slots of the full panel (42),
T = positions after the conv embedding (the "time" axis runs over analytes), C = channels.

Every network takes `values (B, L)` (median-filled, log-transformed, standardised) and
`observed (B, L)` (the missing mask) and scatters them into the panel's S slots, so a
network pre-trained on the COVID-19 analytes and one fine-tuned on any factor set see each
analyte at the same position; a slot the model has no input for is "not observed".

Readout (what the classifier reads), `PrCRSConfig.readout`:
- "mean": the published one, the mean over positions of the body output; used for pre-training;
- "skip": mean and max over positions, plus the encoded inputs and their missing mask (a skip
  connection around the body). The fine-tuned models use it: 14 of the 42 CAR-T analytes
  (BNP, blasts, IL-2/4/10, IFN-gamma, ...) are absent from the COVID-19 cohort, so the frozen
  body never learned them, and the mean pool alone lost to logistic regression (EVALUATION.md
  keeps both readouts, and the classifier on the inputs alone, as ablations).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from prcrs_batch.task.panel import ANALYTE_CODES


@dataclass
class PrCRSConfig:
    arch: str = "prcrs"  # "prcrs" | "cnn" | "transformer": which class build() makes
    input_slots: tuple[int, ...] = tuple(range(len(ANALYTE_CODES)))  # panel slot of each input
    n_slots: int = len(ANALYTE_CODES)  # length of the analyte axis before the embedding
    n_classes: int = 2  # 3 for COVID-19 pre-training (max severity), 2 for severe CRS
    d_model: int = 32  # embedding channels (the paper uses 64; our cohort is 1137 rows)
    n_heads: int = 4
    ff_mult: int = 2  # feed-forward hidden size = ff_mult * d_model
    embed_kernel: int = 5  # conv embedding, as published: kernel 5, stride 2
    embed_stride: int = 2
    conv_kernel: int = 3  # depthwise kernel of the convolution module
    n_outer: int = 1  # Squeezeformer blocks at full length, before and after the U-Net middle
    n_inner: int = 1  # blocks on the downsampled sequence
    dropout: float = 0.1
    readout: str = "skip"  # "mean" (published, pre-training) | "skip" (fine-tuned models)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_slots"] = list(self.input_slots)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PrCRSConfig:
        d = dict(d)
        d["input_slots"] = tuple(d["input_slots"])
        d.setdefault("readout", "mean")  # manifests from before the readout setting used it
        return cls(**d)


def slots_for(inputs: list[str]) -> tuple[int, ...]:
    """Panel slot of each input code, e.g. slots_for(['wbc']) == (11,)."""
    return tuple(ANALYTE_CODES.index(code) for code in inputs)


class _Scatter(nn.Module):
    """(B, L) values + mask -> (B, 2, S): channel 0 the value, channel 1 the observed flag."""

    slots: torch.Tensor  # (L,) panel slot of each input, a buffer

    def __init__(self, config: PrCRSConfig):
        super().__init__()
        self.n_slots = config.n_slots
        self.register_buffer("slots", torch.tensor(config.input_slots, dtype=torch.long))

    def forward(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        B = values.shape[0]
        obs = observed.to(values.dtype)
        x = values.new_zeros(B, 2, self.n_slots)  # (B, 2, S)
        x[:, 0, self.slots] = values * obs  # an unobserved input carries no value
        x[:, 1, self.slots] = obs
        return x


class ConvEmbedding(nn.Module):
    """The published embedding: Conv1d over the analyte axis, then ReLU; plus a position table."""

    def __init__(self, config: PrCRSConfig):
        super().__init__()
        k, s = config.embed_kernel, config.embed_stride
        self.conv = nn.Conv1d(2, config.d_model, k, stride=s, padding=k // 2)
        self.n_pos = (config.n_slots + 2 * (k // 2) - k) // s + 1
        self.pos = nn.Parameter(torch.zeros(1, self.n_pos, config.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))  # (B, C, T)
        return x.transpose(1, 2) + self.pos  # (B, T, C)


class ScaleBias(nn.Module):
    """Squeezeformer's replacement for pre-LayerNorm: a learned per-channel affine map."""

    def __init__(self, d: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.bias


class FeedForward(nn.Module):
    def __init__(self, config: PrCRSConfig):
        super().__init__()
        d = config.d_model
        self.net = nn.Sequential(
            nn.Linear(d, config.ff_mult * d),
            nn.SiLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.ff_mult * d, d),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, SiLU, pointwise conv (Conformer's conv module)."""

    def __init__(self, config: PrCRSConfig):
        super().__init__()
        d, k = config.d_model, config.conv_kernel
        self.pw1 = nn.Conv1d(d, 2 * d, 1)
        self.dw = nn.Conv1d(d, d, k, padding=k // 2, groups=d)
        self.pw2 = nn.Conv1d(d, d, 1)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, C, T)
        x = F.glu(self.pw1(x), dim=1)  # (B, 2C, T) -> (B, C, T)
        x = self.pw2(F.silu(self.dw(x)))
        return self.drop(x.transpose(1, 2))  # (B, T, C)


class SqueezeBlock(nn.Module):
    """MF/CF block: x = LN(x + M(sb(x))); x = LN(x + F(sb(x))); same with C and F."""

    def __init__(self, config: PrCRSConfig):
        super().__init__()
        d = config.d_model
        self.attn = nn.MultiheadAttention(
            d, config.n_heads, dropout=config.dropout, batch_first=True
        )
        self.ff1, self.conv, self.ff2 = FeedForward(config), ConvModule(config), FeedForward(config)
        self.sb = nn.ModuleList([ScaleBias(d) for _ in range(4)])
        self.ln = nn.ModuleList([nn.LayerNorm(d) for _ in range(4)])
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        h = self.sb[0](x)
        x = self.ln[0](x + self.drop(self.attn(h, h, h, need_weights=False)[0]))
        x = self.ln[1](x + self.ff1(self.sb[1](x)))
        x = self.ln[2](x + self.conv(self.sb[2](x)))
        x = self.ln[3](x + self.ff2(self.sb[3](x)))
        return x


def classifier_head(n_in: int, config: PrCRSConfig) -> nn.Sequential:
    """PrCRS's classifier: two linear layers, `n_in` -> d_model -> n_classes."""
    d = config.d_model
    return nn.Sequential(
        nn.Linear(n_in, d), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(d, config.n_classes)
    )


class PrCRS(nn.Module):
    """Conv embedding -> temporal U-Net of Squeezeformer blocks -> readout -> 2 linear layers.

    The body (everything but `head`) is what pre-training learns and fine-tuning freezes.
    """

    def __init__(self, config: PrCRSConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.scatter = _Scatter(config)
        self.embed = ConvEmbedding(config)
        self.pre = nn.ModuleList([SqueezeBlock(config) for _ in range(config.n_outer)])
        self.down = nn.Conv1d(d, d, 3, stride=2, padding=1, groups=d)  # T -> ceil(T/2)
        self.mid = nn.ModuleList([SqueezeBlock(config) for _ in range(config.n_inner)])
        self.up_proj = nn.Linear(d, d)
        self.post = nn.ModuleList([SqueezeBlock(config) for _ in range(config.n_outer)])
        if config.readout not in ("mean", "skip"):
            raise ValueError(f"unknown readout {config.readout!r}")
        n_read = d if config.readout == "mean" else 2 * d + 2 * len(config.input_slots)
        self.head = classifier_head(n_read, config)

    def features(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """What the head classifies: (B, C) for readout "mean", (B, 2C + 2L) for "skip"."""
        x = self.embed(self.scatter(values, observed))  # (B, T, C)
        for block in self.pre:
            x = block(x)
        skip, T = x, x.shape[1]
        x = self.down(x.transpose(1, 2)).transpose(1, 2)  # (B, T/2, C)
        for block in self.mid:
            x = block(x)
        x = x.repeat_interleave(2, dim=1)[:, :T]  # upsample back to (B, T, C)
        x = skip + self.up_proj(x)  # U-Net skip connection
        for block in self.post:
            x = block(x)
        if self.config.readout == "mean":
            return x.mean(dim=1)  # (B, C)
        obs = observed.to(values.dtype)  # an unobserved input carries no value here either
        return torch.cat([x.mean(dim=1), x.amax(dim=1), values * obs, obs], dim=1)

    def forward(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(values, observed))  # (B, n_classes) logits


class CNNBaseline(nn.Module):
    """The paper's CNN: the same conv embedding, two more conv layers, mean pool, linear."""

    def __init__(self, config: PrCRSConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.scatter = _Scatter(config)
        self.embed = ConvEmbedding(config)
        self.convs = nn.Sequential(
            nn.Conv1d(d, d, 3, padding=1),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Conv1d(d, d, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(d, config.n_classes)

    def forward(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.scatter(values, observed)).transpose(1, 2)  # (B, C, T)
        return self.head(self.convs(x).mean(dim=2))  # (B, n_classes)


class TransformerBaseline(nn.Module):
    """The paper's plain Transformer: conv embedding, standard encoder layers, mean pool, linear."""

    def __init__(self, config: PrCRSConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.scatter = _Scatter(config)
        self.embed = ConvEmbedding(config)
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, config.ff_mult * d, config.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, 2 * config.n_outer + config.n_inner, enable_nested_tensor=False
        )
        self.head = nn.Linear(d, config.n_classes)

    def forward(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.embed(self.scatter(values, observed)))  # (B, T, C)
        return self.head(x.mean(dim=1))  # (B, n_classes)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "prcrs": PrCRS,
    "cnn": CNNBaseline,
    "transformer": TransformerBaseline,
}


def build(config: PrCRSConfig) -> nn.Module:
    """Rebuild a network from its config (weights are loaded separately)."""
    return ARCHITECTURES[config.arch](config)


def ensemble_probability(logits: Iterable[torch.Tensor]) -> np.ndarray:
    """The ensemble's probability of class 1: mean over members of softmax(logits)[:, 1].

    `logits` holds one (B, 2) tensor per member; returns float64 (B,) on the CPU. Every
    ensemble prediction (training, CV methods, the manifest check, scoring) goes through here.

    >>> ensemble_probability([torch.zeros(1, 2), torch.tensor([[0.0, 100.0]])]).tolist()
    [0.75]
    """
    probs = [torch.softmax(x, dim=1)[:, 1] for x in logits]  # each (B,)
    return torch.stack(probs).mean(0).double().cpu().numpy()


@torch.inference_mode()
def predict(
    members: Sequence[nn.Module],
    values: np.ndarray,
    observed: np.ndarray,
    device: torch.device | None = None,
) -> np.ndarray:
    """Ensemble probability of class 1 for encoded rows (matrix.encode), in eval mode.

    The inputs go to `device`, by default the device of the first member's weights.
    """
    device = device or next(members[0].parameters()).device
    v = torch.from_numpy(values).to(device)  # (B, L)
    o = torch.from_numpy(observed).to(device)  # (B, L)
    return ensemble_probability(m.eval()(v, o) for m in members)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
