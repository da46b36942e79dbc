"""Loupe's Florence-style model pack: a CLIP-format dual encoder, a METER-style VQA head and a
temporal video head, small enough to run on two CPU cores.

- Vision: a ViT (patch 8) whose CLS token, layer-normed and projected, is `image_embeds`; its
  encoder output is `last_hidden_state` (the tokens the VQA head reads), as in HF CLIP.
- Text: a bidirectional transformer over byte-level BPE tokens; the end-of-text position, layer-normed
  and projected, is `text_embeds`; the layer-normed tokens are `last_hidden_state`.
- METER head: stacked co-attention layers (self-attention, cross-attention both ways, feed-forward,
  on both streams), pooled first tokens of both streams, classified over the 22 answers.
- Video head: a temporal transformer over per-frame `image_embeds`, pooled and projected to the
  shared space (mean pooling could not tell "moving left" from "moving right"); with a token grid, also
  a motion branch over per-frame grids of tower tokens (an image embedding hardly says where things are).

Attention is written out with matmul/softmax when `exportable` is set (the ONNX export path) and uses
PyTorch's fused kernel otherwise; both compute the same function.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VisionConfig:
    image_size: int = 128
    patch_size: int = 8
    hidden_size: int = 192
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    intermediate_size: int = 768


@dataclass
class TextConfig:
    vocab_size: int = 640
    max_position_embeddings: int = 32
    hidden_size: int = 192
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    intermediate_size: int = 768


@dataclass
class MeterConfig:
    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 256
    num_answers: int = 22


@dataclass
class VideoConfig:
    num_frames: int = 16
    hidden_size: int = 192
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 384
    # 0: the head reads per-frame `image_embeds`. G > 0: it reads per-frame tower tokens, the raw CLS token
    # and the patch tokens averaged over a G x G grid, and adds a motion branch over the grid.
    token_grid: int = 0
    motion_channels: int = 8
    motion_hidden_size: int = 256


@dataclass
class PackConfig:
    projection_dim: int = 256
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    meter: MeterConfig = field(default_factory=MeterConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "PackConfig":
        return PackConfig(
            projection_dim=d["projection_dim"],
            vision=VisionConfig(**d["vision"]),
            text=TextConfig(**d["text"]),
            meter=MeterConfig(**d["meter"]),
            video=VideoConfig(**d["video"]),
        )


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim or dim, dim)
        self.v = nn.Linear(kv_dim or dim, dim)
        self.out = nn.Linear(dim, dim)
        self.exportable = False

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """key_mask: [B, Lk] bool, True where the key may be attended to."""
        context = x if context is None else context
        b, lq, _ = x.shape
        lk = context.shape[1]
        q = self.q(x).view(b, lq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(context).view(b, lk, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(context).view(b, lk, self.heads, self.head_dim).transpose(1, 2)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if self.exportable:
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
            if mask is not None:
                scores = scores.masked_fill(~mask, -1e4)
            out = torch.softmax(scores, dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(b, lq, -1))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_mask=key_mask)
        return x + self.mlp(self.norm2(x))


class VisionTower(nn.Module):
    def __init__(self, cfg: VisionConfig, projection_dim: int):
        super().__init__()
        self.cfg = cfg
        n = (cfg.image_size // cfg.patch_size) ** 2
        self.patch = nn.Conv2d(3, cfg.hidden_size, cfg.patch_size, cfg.patch_size, bias=False)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.pos = nn.Parameter(torch.randn(1, n + 1, cfg.hidden_size) * 0.02)
        self.pre_norm = nn.LayerNorm(cfg.hidden_size)
        self.blocks = nn.ModuleList(
            [Block(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) for _ in range(cfg.num_hidden_layers)]
        )
        self.post_norm = nn.LayerNorm(cfg.hidden_size)
        self.projection = nn.Linear(cfg.hidden_size, projection_dim, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x)
        image_embeds = self.projection(self.post_norm(x[:, 0]))
        return image_embeds, x


class TextTower(nn.Module):
    def __init__(self, cfg: TextConfig, projection_dim: int):
        super().__init__()
        self.cfg = cfg
        self.token = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.pos = nn.Parameter(torch.randn(1, cfg.max_position_embeddings, cfg.hidden_size) * 0.02)
        self.blocks = nn.ModuleList(
            [Block(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) for _ in range(cfg.num_hidden_layers)]
        )
        self.final_norm = nn.LayerNorm(cfg.hidden_size)
        self.projection = nn.Linear(cfg.hidden_size, projection_dim, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = input_ids.shape[1]
        x = self.token(input_ids) + self.pos[:, :length]
        key_mask = attention_mask > 0
        for block in self.blocks:
            x = block(x, key_mask=key_mask)
        x = self.final_norm(x)
        # The end-of-text token is the last real token.
        last = (attention_mask.sum(1) - 1).clamp(min=0)
        pooled = torch.gather(x, 1, last.view(-1, 1, 1).expand(-1, 1, x.shape[-1])).squeeze(1)
        return self.projection(pooled), x


class CoAttentionLayer(nn.Module):
    """One METER co-attention layer: each stream self-attends, cross-attends to the other, then a feed-forward."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.streams = nn.ModuleList()
        for _ in range(2):
            self.streams.append(
                nn.ModuleDict(
                    {
                        "norm_self": nn.LayerNorm(dim),
                        "self_attn": Attention(dim, heads),
                        "norm_cross": nn.LayerNorm(dim),
                        "cross_attn": Attention(dim, heads),
                        "norm_ff": nn.LayerNorm(dim),
                        "ff": nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)),
                    }
                )
            )

    def forward(self, text: torch.Tensor, image: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t, i = self.streams
        text = text + t["self_attn"](t["norm_self"](text), key_mask=text_mask)
        image = image + i["self_attn"](i["norm_self"](image))
        text_n, image_n = t["norm_cross"](text), i["norm_cross"](image)
        text = text + t["cross_attn"](text_n, context=image_n)
        image = image + i["cross_attn"](image_n, context=text_n, key_mask=text_mask)
        text = text + t["ff"](t["norm_ff"](text))
        image = image + i["ff"](i["norm_ff"](image))
        return text, image


def sincos_2d(grid: int, dim: int, amplitude: float = 0.5) -> torch.Tensor:
    """[1, 1 + grid*grid, dim] fixed 2D sine-cosine positions for a CLS token (zeros) and a grid of patches:
    a quarter of the channels each for sin/cos of the column and of the row, at geometric frequencies."""
    quarter = dim // 4
    freqs = 1.0 / (grid ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    coords = torch.arange(grid, dtype=torch.float32)
    cols = coords.repeat(grid)  # patch index = row * grid + col
    rows = coords.repeat_interleave(grid)
    ac, ar = cols[:, None] * freqs[None, :] * math.pi, rows[:, None] * freqs[None, :] * math.pi
    table = torch.cat([torch.sin(ac), torch.cos(ac), torch.sin(ar), torch.cos(ar)], 1)
    table = F.pad(table, (0, dim - table.shape[1]))
    return amplitude * torch.cat([torch.zeros(1, dim), table], 0)[None]


class MeterHead(nn.Module):
    def __init__(self, cfg: MeterConfig, image_width: int, text_width: int, image_tokens: int, text_tokens: int):
        super().__init__()
        d = cfg.hidden_size
        self.image_in = nn.Sequential(nn.LayerNorm(image_width), nn.Linear(image_width, d))
        self.text_in = nn.Sequential(nn.LayerNorm(text_width), nn.Linear(text_width, d))
        self.type_embed = nn.Parameter(torch.randn(2, d) * 0.02)
        # The head's own positions for image tokens: "left or right?" needs where a token is, and the
        # tower's positional signal fades through its layers. Zero at start, so older heads load as they were.
        self.image_pos = nn.Parameter(torch.zeros(1, image_tokens, d))
        self.layers = nn.ModuleList([CoAttentionLayer(d, cfg.num_heads, cfg.intermediate_size) for _ in range(cfg.num_layers)])
        self.text_pool = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.Tanh())
        self.image_pool = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.Tanh())
        self.classifier = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.LayerNorm(2 * d), nn.GELU(), nn.Linear(2 * d, cfg.num_answers))

    def forward(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        image = self.image_in(image_tokens) + self.type_embed[1] + self.image_pos
        text = self.text_in(text_tokens) + self.type_embed[0]
        mask = text_mask > 0
        for layer in self.layers:
            text, image = layer(text, image, mask)
        pooled = torch.cat([self.text_pool(text[:, 0]), self.image_pool(image[:, 0])], -1)
        return self.classifier(pooled)

    def init_image_pos(self, amplitude: float = 0.5) -> None:
        """Starts the head's image positions from 2D sine-cosine positions: the tower's own positional
        signal reaches the head too faintly (a linear probe tells a patch's half from its token only
        78% of the time) for "left or right?" to be learned from zero."""
        grid = int(round(math.sqrt(self.image_pos.shape[1] - 1)))
        with torch.no_grad():
            self.image_pos.copy_(sincos_2d(grid, self.image_pos.shape[2], amplitude))


def grid_tokens(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """[N, 1 + P*P, W] tower tokens -> [N, 1 + grid*grid, W]: the CLS token, then the patch tokens averaged
    over a grid x grid grid (row-major), as a token-grid video head reads them (the TypeScript runtime pools the same way)."""
    n, length, width = tokens.shape
    side = int(round((length - 1) ** 0.5))
    patches = tokens[:, 1:].transpose(1, 2).reshape(n, width, side, side)
    pooled = F.avg_pool2d(patches, side // grid).flatten(2).transpose(1, 2)
    return torch.cat([tokens[:, :1], pooled], 1)


class VideoHead(nn.Module):
    """A temporal transformer over per-frame image embeddings, pooled and projected to the shared space.

    With `token_grid` set, frame features are tower tokens ([B, T, 1 + G*G, W]: the raw CLS token, then the
    patch tokens averaged over a G x G grid): the CLS token goes through copies of the tower's final norm and
    projection to give the image embeddings above, and a motion branch reads the grid tokens of all frames:
    each token is narrowed to a few channels, and the whole [T, G*G, channels] block goes through an MLP, so
    every weight knows which frame and which cell it reads. Its output is added to the temporal state. An
    image embedding says what a frame shows but hardly where (a probe tells the action from per-frame CLS
    tokens 48% of the time, from the grids 98%). The branch's output layer starts at zero, so a head that
    read embeddings alone starts as it was.
    """

    def __init__(self, cfg: VideoConfig, projection_dim: int, vision_width: int = 0):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Sequential(nn.LayerNorm(projection_dim), nn.Linear(projection_dim, cfg.hidden_size))
        self.pos = nn.Parameter(torch.randn(1, cfg.num_frames, cfg.hidden_size) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.blocks = nn.ModuleList([Block(cfg.hidden_size, cfg.num_heads, cfg.intermediate_size) for _ in range(cfg.num_layers)])
        self.norm = nn.LayerNorm(cfg.hidden_size)
        self.projection = nn.Linear(cfg.hidden_size, projection_dim, bias=False)
        if cfg.token_grid:
            if not vision_width:
                raise ValueError("a token-reading video head needs the vision tower's width")
            cells = cfg.num_frames * cfg.token_grid * cfg.token_grid
            self.frame_norm = nn.LayerNorm(vision_width)
            self.frame_projection = nn.Linear(vision_width, projection_dim, bias=False)
            self.grid_in = nn.Sequential(nn.LayerNorm(vision_width), nn.Linear(vision_width, cfg.motion_channels))
            self.motion = nn.Sequential(
                nn.Dropout(0.1),
                nn.Linear(cells * cfg.motion_channels, cfg.motion_hidden_size),
                nn.GELU(),
                nn.LayerNorm(cfg.motion_hidden_size),
            )
            self.motion_out = nn.Linear(cfg.motion_hidden_size, cfg.hidden_size)
            nn.init.zeros_(self.motion_out.weight)
            nn.init.zeros_(self.motion_out.bias)

    def copy_frame_projection(self, vision: "VisionTower") -> None:
        """Starts the CLS path from the tower's own final norm and projection (so it gives image_embeds)."""
        with torch.no_grad():
            self.frame_norm.load_state_dict(vision.post_norm.state_dict())
            self.frame_projection.load_state_dict(vision.projection.state_dict())

    def motion_state(self, frame_features: torch.Tensor) -> torch.Tensor:
        """[B, motion_hidden_size]: the motion branch's reading of a token-grid clip."""
        return self.motion(self.grid_in(frame_features[:, :, 1:]).flatten(1))

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        frames = frame_features.shape[1]
        embeds = frame_features
        if self.cfg.token_grid:
            embeds = self.frame_projection(self.frame_norm(frame_features[:, :, 0]))
        x = self.inp(embeds) + self.pos[:, :frames]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        for block in self.blocks:
            x = block(x)
        state = x[:, 0]
        if self.cfg.token_grid:
            state = state + self.motion_out(self.motion_state(frame_features))
        return self.projection(self.norm(state))


def float_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's weights (stored in float16) as float32 for loading into a model."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


class LoupePack(nn.Module):
    def __init__(self, cfg: PackConfig):
        super().__init__()
        self.cfg = cfg
        self.vision = VisionTower(cfg.vision, cfg.projection_dim)
        self.text = TextTower(cfg.text, cfg.projection_dim)
        n_image_tokens = (cfg.vision.image_size // cfg.vision.patch_size) ** 2 + 1
        self.meter = MeterHead(cfg.meter, cfg.vision.hidden_size, cfg.text.hidden_size, n_image_tokens, cfg.text.max_position_embeddings)
        self.video = VideoHead(cfg.video, cfg.projection_dim, cfg.vision.hidden_size)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def set_exportable(self, value: bool) -> None:
        for module in self.modules():
            if isinstance(module, Attention):
                module.exportable = value
