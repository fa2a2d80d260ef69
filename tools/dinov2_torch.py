"""A plain PyTorch definition of the DINOv2 ViT backbone, written to follow
the official model code's semantics (prepare_tokens_with_masks,
interpolate_pos_encoding in both modes, LayerScale, MLP or fused SwiGLU,
registers). Used by the test generators, the benchmarks and the export checks
with Debian's python3-torch; load_state_dict takes official names.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    def __init__(self, dim, init=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, swiglu):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLU(dim, hidden) if swiglu else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoVisionTransformer(nn.Module):
    def __init__(self, dim, depth, heads=None, patch=14, grid=37, hidden=None, swiglu=False,
                 registers=0, interpolate_offset=0.1, interpolate_antialias=False):
        super().__init__()
        self.patch_size = patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None
        self.interpolate_offset = interpolate_offset
        self.interpolate_antialias = interpolate_antialias
        hidden = hidden or 4 * dim
        self.blocks = nn.ModuleList(Block(dim, heads or dim // 64, hidden, swiglu) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def interpolate_pos_encoding(self, x, h, w):
        npatch, n = x.shape[1] - 1, self.pos_embed.shape[1] - 1
        if npatch == n and w == h:
            return self.pos_embed
        class_pos, patch_pos = self.pos_embed[:, 0], self.pos_embed[:, 1:]
        dim = x.shape[-1]
        h0, w0 = h // self.patch_size, w // self.patch_size
        m = int(math.sqrt(n))
        kwargs = {}
        if self.interpolate_offset:
            kwargs["scale_factor"] = ((h0 + self.interpolate_offset) / m, (w0 + self.interpolate_offset) / m)
        else:
            kwargs["size"] = (h0, w0)
        patch_pos = F.interpolate(patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2), mode="bicubic",
                                  antialias=self.interpolate_antialias, **kwargs)
        assert (h0, w0) == patch_pos.shape[-2:]
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos.unsqueeze(0), patch_pos), dim=1)

    def prepare_tokens(self, x, masks=None):
        _, _, h, w = x.shape
        x = self.patch_embed(x)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, h, w)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)
        return x

    def forward_features(self, x, masks=None):
        x = self.prepare_tokens(x, masks)
        for blk in self.blocks:
            x = blk(x)
        x_norm = self.norm(x)
        r = 0 if self.register_tokens is None else self.register_tokens.shape[1]
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_norm_regtokens": x_norm[:, 1:r + 1],
            "x_norm_patchtokens": x_norm[:, r + 1:],
            "x_prenorm": x,
        }


SIZES = {  # name: (dim, depth, swiglu hidden or None)
    "vits14": (384, 12, None), "vitb14": (768, 12, None), "vitl14": (1024, 24, None),
    "vitg14": (1536, 40, 4096),
}


def from_size(name, **kw):
    dim, depth, swiglu_hidden = SIZES[name]
    if swiglu_hidden:
        kw.setdefault("swiglu", True)
        kw.setdefault("hidden", swiglu_hidden)
    return DinoVisionTransformer(dim, depth, **kw)
