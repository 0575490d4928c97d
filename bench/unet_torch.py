"""Diffuse's U-Net (src/nn/unet.ts) in PyTorch, for the benchmark baselines.

The architecture follows UNetConfig field by field, so the parameter count equals
Diffuse's (1,590,787 for REFERENCE_UNET).

Usage: python3 bench/unet_torch.py forward|train BATCH REPEATS [CONFIG_JSON]
Without CONFIG_JSON the engine issue's reference U-Net (32x32x3) is used.
Prints one JSON line: {"params", "times_ms", "max_rss_mb", "torch", "threads"}.
"""
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

REFERENCE = {
    "imageSize": 32, "inChannels": 3, "outChannels": 3, "baseChannels": 64, "channelMults": [1, 2], "resBlocks": 2,
    "attentionResolutions": [16], "attentionHeads": 1, "normGroups": 8, "timeEmbedDim": 64, "middleAttention": False,
}


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, c, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        d = c // self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, d, h * w).unbind(1)
        attn = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(d), dim=-1)
        return x + self.proj((v @ attn.transpose(-1, -2)).reshape(n, c, h, w))


class UNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        g, base, tdim = c["normGroups"], c["baseChannels"], 4 * c["timeEmbedDim"]
        self.time_mlp = nn.Sequential(nn.Linear(c["timeEmbedDim"], tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.stem = nn.Conv2d(c["inChannels"], base, 3, padding=1)
        levels = len(c["channelMults"])
        self.down, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleDict(), nn.ModuleDict()
        ch, res = base, c["imageSize"]
        for l, m in enumerate(c["channelMults"]):
            blocks = nn.ModuleList()
            for _ in range(c["resBlocks"]):
                blocks.append(ResBlock(ch, base * m, tdim, g))
                ch = base * m
            self.down.append(blocks)
            if res in c["attentionResolutions"]:
                self.down_attn[str(l)] = Attention(ch, c["attentionHeads"], g)
            if l < levels - 1:
                self.downsample[str(l)] = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, tdim, g)])
        self.mid_attn = Attention(ch, c["attentionHeads"], g) if c["middleAttention"] else None
        if c["middleAttention"]:
            self.mid.append(ResBlock(ch, ch, tdim, g))
        self.up, self.up_attn, self.upsample = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        for l in range(levels - 2, -1, -1):
            out = base * c["channelMults"][l]
            res *= 2
            self.upsample[str(l)] = nn.Conv2d(ch, out, 3, padding=1)
            ch = out + out
            blocks = nn.ModuleList()
            for _ in range(c["resBlocks"]):
                blocks.append(ResBlock(ch, out, tdim, g))
                ch = out
            self.up[str(l)] = blocks
            if res in c["attentionResolutions"]:
                self.up_attn[str(l)] = Attention(ch, c["attentionHeads"], g)
        self.out_norm = nn.GroupNorm(g, ch)
        self.out = nn.Conv2d(ch, c["outChannels"], 3, padding=1)

    def forward(self, x, t):
        half = self.c["timeEmbedDim"] // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None] * freqs[None]
        temb = self.time_mlp(torch.cat([torch.sin(args), torch.cos(args)], 1))
        h = self.stem(x)
        skips = []
        levels = len(self.c["channelMults"])
        for l in range(levels):
            for b in self.down[l]:
                h = b(h, temb)
            if str(l) in self.down_attn:
                h = self.down_attn[str(l)](h)
            if l < levels - 1:
                skips.append(h)
                h = self.downsample[str(l)](h)
        h = self.mid[0](h, temb)
        if self.mid_attn is not None:
            h = self.mid[1](self.mid_attn(h), temb)
        for l in range(levels - 2, -1, -1):
            h = self.upsample[str(l)](F.interpolate(h, scale_factor=2, mode="nearest"))
            h = torch.cat([h, skips[l]], 1)
            for b in self.up[str(l)]:
                h = b(h, temb)
            if str(l) in self.up_attn:
                h = self.up_attn[str(l)](h)
        return self.out(F.silu(self.out_norm(h)))


def main():
    mode, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cfg = json.loads(sys.argv[4]) if len(sys.argv) > 4 else REFERENCE
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = UNet(cfg)
    s, ch = cfg["imageSize"], cfg["inChannels"]
    x = torch.randn(batch, ch, s, s)
    t = torch.randint(0, 1000, (batch,)).float()
    eps = torch.randn(batch, ch, s, s)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        if mode == "forward":
            with torch.no_grad():
                model(x, t)
        else:
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x, t), eps)
            loss.backward()
            opt.step()
        times.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({
        "params": sum(p.numel() for p in model.parameters()),
        "times_ms": times,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
