"""Noise-prediction UNet of DDAD (a guided-diffusion style UNet, as in the official DDAD code).

Architecture per the official ``unet.py`` (github arimousa/DDAD) with DDAD's settings from its
``main.py``: base width 64, 4 attention heads, dropout 0, two residual blocks per level, BigGAN
style up/down-sampling residual blocks, self-attention at feature resolutions 32, 16 and 8 and in
the middle block, sinusoidal timestep embedding followed by a two-layer MLP (width 4 x base).
Channel multipliers depend on the input size (official table). Submodule names follow the
official state-dict layout so that official checkpoints load without renaming keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Official per-size channel multipliers. The official table also lists 512 with a 0.5 multiplier,
# but that configuration cannot be built there (float channel count, stem/first-block mismatch),
# so it is not offered here.
CHANNEL_MULTS: dict[int, tuple[int, ...]] = {
    32: (1, 2, 3, 4),
    64: (1, 2, 3, 4),
    128: (1, 1, 2, 3, 4),
    256: (1, 1, 2, 2, 4, 4),
}
# Input sizes served by a larger architecture: a 224 px centre crop runs the 256 px network (same
# weights; attention sits at the same depths, i.e. on 28/14/7 px maps instead of 32/16/8).
ARCHITECTURE_FOR_SIZE: dict[int, int] = {224: 256}
SUPPORTED_SIZES = tuple(sorted({*CHANNEL_MULTS, *ARCHITECTURE_FOR_SIZE}))


def architecture_size(image_size: int) -> int:
    """Size whose official architecture serves ``image_size`` inputs; raise for unsupported sizes."""
    arch = ARCHITECTURE_FOR_SIZE.get(int(image_size), int(image_size))
    if arch not in CHANNEL_MULTS:
        raise ValueError(
            f"DDAD UNet: unsupported image_size {image_size}; supported sizes are {list(SUPPORTED_SIZES)} "
            "(official channel-multiplier table; 224 runs the 256 architecture)"
        )
    return arch


def _zeroed(module: nn.Module) -> nn.Module:
    """Zero-initialise a layer so each residual branch starts as the identity (guided-diffusion init)."""
    for param in module.parameters():
        nn.init.zeros_(param)
    return module


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (stable under mixed precision)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class SinusoidalEmbedding(nn.Module):
    """Sin/cos features of the (float) timestep; frequencies 10000^(-k/half), k < half."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"timestep embedding width must be even, got {dim}")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / half))
        angles = t.float()[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """Residual block with additive timestep conditioning; optional 2x down (avg-pool) / up (nearest)."""

    def __init__(self, in_ch: int, emb_dim: int, out_ch: int | None = None, dropout: float = 0.0,
                 resample: str | None = None) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.resample = resample
        self.in_layers = nn.Sequential(GroupNorm32(32, in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.embed_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_ch))
        self.out_layers = nn.Sequential(
            GroupNorm32(32, out_ch), nn.SiLU(), nn.Dropout(dropout), _zeroed(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        )
        self.skip_connection = nn.Identity() if out_ch == in_ch else nn.Conv2d(in_ch, out_ch, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.resample:  # resample between the activation and the conv, on both branches (BigGAN)
            h = self.in_layers[2](self._resample(self.in_layers[:2](x)))
            x = self._resample(x)
        else:
            h = self.in_layers(x)
        h = h + self.embed_layers(emb).type(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class SelfAttention(nn.Module):
    """Multi-head self-attention over all spatial positions, with a zero-initialised output projection.

    The fused qkv projection is laid out head by head ([q, k, v] of head 0, then head 1, ...), the
    layout of the official (legacy guided-diffusion) checkpoints.
    """

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels are not divisible by {heads} heads")
        self.heads = heads
        self.norm = GroupNorm32(32, channels)
        self.to_qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        del emb
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.to_qkv(self.norm(flat)).reshape(b * self.heads, 3 * (c // self.heads), -1)
        q, k, v = qkv.chunk(3, dim=1)  # each (b*heads, head_dim, tokens)
        # plain softmax attention (on CPU cheaper than SDPA's math fallback), softmax in float32; q and k are
        # scaled by head_dim^-1/4 each, as official: cheaper than scaling the tokens x tokens product
        scale = q.shape[1] ** -0.25
        weights = torch.softmax(((q * scale).transpose(1, 2) @ (k * scale)).float(), dim=-1).type(q.dtype)
        out = (v @ weights.transpose(1, 2)).reshape(b, c, -1)
        return (flat + self.proj_out(out)).reshape(b, c, *spatial)


class EmbedSequential(nn.Sequential):
    """Sequential container that hands the timestep embedding to the blocks that take one."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (ResBlock, SelfAttention)) else layer(x)
        return x


class DdadUNet(nn.Module):
    """Predicts the noise ``eps`` of a noised image ``x_t`` at (float) timestep ``t``.

    Args:
        image_size: input size; selects the official channel multipliers and the attention depths.
        in_channels: image channels (3: DDAD feeds grayscale images as 3 equal channels).
        base_channels: width of the first level (official DDAD: 64; must be a multiple of 32).
        channel_mults: override the official multipliers.
        num_res_blocks: residual blocks per level (official: 2).
        attention_resolutions: feature-map sizes (at ``image_size``) that get self-attention.
        heads: attention heads (official DDAD: 4).
        dropout: dropout in the residual blocks (official DDAD: 0.0).
    """

    def __init__(self, image_size: int = 256, in_channels: int = 3, base_channels: int = 64,
                 channel_mults: tuple[int, ...] | None = None, num_res_blocks: int = 2,
                 attention_resolutions: tuple[int, ...] = (32, 16, 8), heads: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        arch = architecture_size(image_size)
        mults = tuple(channel_mults or CHANNEL_MULTS[arch])
        if base_channels % 32:
            raise ValueError(f"base_channels must be a multiple of 32 (GroupNorm with 32 groups), got {base_channels}")
        self.image_size, self.in_channels, self.channel_mults = int(image_size), in_channels, mults
        self.size_multiple = 2 ** (len(mults) - 1)
        attn_factors = {arch // res for res in attention_resolutions}  # downsampling factors with attention
        emb_dim = 4 * base_channels
        self.time_embedding = nn.Sequential(
            SinusoidalEmbedding(base_channels), nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

        def level(in_ch: int, out_ch: int, factor: int) -> list[nn.Module]:
            blocks: list[nn.Module] = [ResBlock(in_ch, emb_dim, out_ch, dropout)]
            if factor in attn_factors:
                blocks.append(SelfAttention(out_ch, heads))
            return blocks

        self.down = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, base_channels, 3, padding=1))])
        skips, ch, factor = [base_channels], base_channels, 1
        for i, mult in enumerate(mults):
            for _ in range(num_res_blocks):
                self.down.append(EmbedSequential(*level(ch, base_channels * mult, factor)))
                ch = base_channels * mult
                skips.append(ch)
            if i < len(mults) - 1:
                self.down.append(EmbedSequential(ResBlock(ch, emb_dim, ch, dropout, resample="down")))
                factor *= 2
                skips.append(ch)

        self.middle = EmbedSequential(
            ResBlock(ch, emb_dim, ch, dropout), SelfAttention(ch, heads), ResBlock(ch, emb_dim, ch, dropout)
        )

        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(mults))):
            for j in range(num_res_blocks + 1):
                blocks = level(ch + skips.pop(), base_channels * mult, factor)
                ch = base_channels * mult
                if i and j == num_res_blocks:
                    blocks.append(ResBlock(ch, emb_dim, ch, dropout, resample="up"))
                    factor //= 2
                self.up.append(EmbedSequential(*blocks))

        self.out = nn.Sequential(GroupNorm32(32, ch), nn.SiLU(), _zeroed(nn.Conv2d(ch, in_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DDAD UNet expects (B, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        if x.shape[-1] % self.size_multiple or x.shape[-2] % self.size_multiple:
            raise ValueError(
                f"DDAD UNet ({self.image_size} px architecture) needs height and width divisible by "
                f"{self.size_multiple}, got {tuple(x.shape[-2:])}; crop or resize the images (e.g. ISPAD "
                "center_crop: 224, or border_crop: 0 for ASM)"
            )
        emb = self.time_embedding(t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t)
        hidden, skips = x, []
        for block in self.down:
            hidden = block(hidden, emb)
            skips.append(hidden)
        hidden = self.middle(hidden, emb)
        for block in self.up:
            hidden = block(torch.cat([hidden, skips.pop()], dim=1), emb)
        return self.out(hidden)
