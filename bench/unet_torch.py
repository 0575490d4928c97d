"""The engine benchmark's reference U-Net in PyTorch, for the baseline.

Same architecture as REFERENCE_UNET in src/nn/unet.ts (1,590,787 parameters).
Usage: python3 bench/unet_torch.py forward|train BATCH REPEATS
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
    def __init__(self, c, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        attn = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)
        return x + self.proj((v @ attn.transpose(1, 2)).reshape(n, c, h, w))


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        g, tdim = 8, 256
        self.time_mlp = nn.Sequential(nn.Linear(64, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.stem = nn.Conv2d(3, 64, 3, padding=1)
        self.down0 = nn.ModuleList([ResBlock(64, 64, tdim, g), ResBlock(64, 64, tdim, g)])
        self.downsample = nn.Conv2d(64, 64, 3, stride=2, padding=1)
        self.down1 = nn.ModuleList([ResBlock(64, 128, tdim, g), ResBlock(128, 128, tdim, g)])
        self.attn = Attention(128, g)
        self.mid = ResBlock(128, 128, tdim, g)
        self.upsample = nn.Conv2d(128, 64, 3, padding=1)
        self.up0 = nn.ModuleList([ResBlock(128, 64, tdim, g), ResBlock(64, 64, tdim, g)])
        self.out_norm = nn.GroupNorm(g, 64)
        self.out = nn.Conv2d(64, 3, 3, padding=1)

    def forward(self, x, t):
        half = 32
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None] * freqs[None]
        temb = self.time_mlp(torch.cat([torch.sin(args), torch.cos(args)], 1))
        h = self.stem(x)
        for b in self.down0:
            h = b(h, temb)
        skip = h
        h = self.downsample(h)
        for b in self.down1:
            h = b(h, temb)
        h = self.attn(h)
        h = self.mid(h, temb)
        h = self.upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = torch.cat([h, skip], 1)
        for b in self.up0:
            h = b(h, temb)
        return self.out(F.silu(self.out_norm(h)))


def main():
    mode, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = UNet()
    x = torch.randn(batch, 3, 32, 32)
    t = torch.randint(0, 1000, (batch,)).float()
    eps = torch.randn(batch, 3, 32, 32)
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
