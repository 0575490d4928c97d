"""
Stable Diffusion 1.5's U-Net (the architecture of diffusers' UNet2DConditionModel with SD 1.5's
config: channels 320/640/1280/1280, two ResNet blocks per level, cross-attention to 77 x 768 CLIP
states at the first three levels and in the middle, GEGLU feed-forward), written out in PyTorch
with random weights, for timing and memory only: 859,520,964 parameters, as SD 1.5's.

  python bench/sd15_unet.py --export DIR      # DIR/unet/model.onnx (+ external weights), Optimum's input names
  python bench/sd15_unet.py --export DIR --half [--external]   # float16 weights, sample and states (as Optimum's --dtype fp16), 1.7 GB;
                                                             # --external: the weights in model.onnx_data beside the graph
  python bench/sd15_unet.py --time [--repeats 3] [--size 64] [--threads 2]   # PyTorch's time for one step, JSON

Run by `npm run bench:sd-unet` (bench/sd-unet.ts), which times the same network in ONNX Runtime.
"""
import argparse
import json
import math
import os
import resource
import time
import torch
import torch.nn as nn
import torch.nn.functional as F

CH = (320, 640, 1280, 1280)
HEAD_DIM_HEADS = 8
CROSS = 768
TEMB = 1280


class Resnet(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(TEMB, cout)
        self.norm2 = nn.GroupNorm(32, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx_dim, dim, bias=False)
        self.to_v = nn.Linear(ctx_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        b, n, d = x.shape
        h = self.heads
        q = self.to_q(x).view(b, n, h, d // h).transpose(1, 2)
        k = self.to_k(ctx).view(b, ctx.shape[1], h, d // h).transpose(1, 2)
        v = self.to_v(ctx).view(b, ctx.shape[1], h, d // h).transpose(1, 2)
        # As diffusers' AttnProcessor2_0 computes it with PyTorch 2 (the fused kernel when timing;
        # the exporter writes it as MatMul, Softmax, MatMul).
        o = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(o.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, CROSS, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_proj = nn.Linear(dim, dim * 8)  # GEGLU: 2 x 4 dim
        self.ff_out = nn.Linear(dim * 4, dim)

    def forward(self, x, ctx):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), ctx) + x
        a, g = self.ff_proj(self.norm3(x)).chunk(2, dim=-1)
        return self.ff_out(a * F.gelu(g)) + x


class Transformer(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.norm = nn.GroupNorm(32, ch, eps=1e-6)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.block = Block(ch, HEAD_DIM_HEADS)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, ctx):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        h = self.block(h, ctx).reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        return self.proj_out(h) + x


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(4, CH[0], 3, padding=1)
        self.time_1 = nn.Linear(CH[0], TEMB)
        self.time_2 = nn.Linear(TEMB, TEMB)
        self.down = nn.ModuleList()
        cin = CH[0]
        for i, cout in enumerate(CH):
            attn = i < 3
            blk = nn.ModuleDict()
            blk["res"] = nn.ModuleList([Resnet(cin if j == 0 else cout, cout) for j in range(2)])
            blk["attn"] = nn.ModuleList([Transformer(cout) for _ in range(2)]) if attn else nn.ModuleList()
            blk["down"] = nn.ModuleList([nn.Conv2d(cout, cout, 3, stride=2, padding=1)]) if i < 3 else nn.ModuleList()
            self.down.append(blk)
            cin = cout
        self.mid_res1 = Resnet(CH[-1], CH[-1])
        self.mid_attn = Transformer(CH[-1])
        self.mid_res2 = Resnet(CH[-1], CH[-1])
        self.up = nn.ModuleList()
        rev = list(reversed(CH))
        out_ch = rev[0]
        for i in range(4):
            prev = out_ch
            out_ch = rev[i]
            in_ch = rev[min(i + 1, 3)]
            blk = nn.ModuleDict()
            res = []
            for j in range(3):
                skip = in_ch if j == 2 else out_ch
                rin = prev if j == 0 else out_ch
                res.append(Resnet(rin + skip, out_ch))
            blk["res"] = nn.ModuleList(res)
            blk["attn"] = nn.ModuleList([Transformer(out_ch) for _ in range(3)]) if i > 0 else nn.ModuleList()
            blk["up"] = nn.ModuleList([nn.Conv2d(out_ch, out_ch, 3, padding=1)]) if i < 3 else nn.ModuleList()
            self.up.append(blk)
        self.norm_out = nn.GroupNorm(32, CH[0], eps=1e-5)
        self.conv_out = nn.Conv2d(CH[0], 4, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states):
        half = CH[0] // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        t = timestep.float().reshape(-1)[:1].expand(sample.shape[0])
        e = t[:, None] * freqs[None]
        temb = self.time_2(F.silu(self.time_1(torch.cat([torch.cos(e), torch.sin(e)], dim=-1).to(sample.dtype))))
        x = self.conv_in(sample)
        skips = [x]
        for blk in self.down:
            for j, r in enumerate(blk["res"]):
                x = r(x, temb)
                if len(blk["attn"]):
                    x = blk["attn"][j](x, encoder_hidden_states)
                skips.append(x)
            for d in blk["down"]:
                x = d(x)
                skips.append(x)
        x = self.mid_res2(self.mid_attn(self.mid_res1(x, temb), encoder_hidden_states), temb)
        for blk in self.up:
            for j, r in enumerate(blk["res"]):
                x = r(torch.cat([x, skips.pop()], dim=1), temb)
                if len(blk["attn"]):
                    x = blk["attn"][j](x, encoder_hidden_states)
            for u in blk["up"]:
                x = u(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(x)))


def inputs(batch, size):
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 4, size, size, generator=g), torch.tensor(981.0), torch.randn(batch, 77, CROSS, generator=g)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export")
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=64, help="latent side (64 = 512x512 images)")
    ap.add_argument("--batch", type=int, default=2, help="2 = one guided step")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--half", action="store_true", help="export in float16 (traced at a small size: the axes are dynamic)")
    ap.add_argument("--external", action="store_true", help="weights in model.onnx_data (float32 exports always are: over 2 GB)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = UNet().eval()
    params = sum(p.numel() for p in m.parameters())
    if a.export:
        os.makedirs(os.path.join(a.export, "unet"), exist_ok=True)
        out = os.path.join(a.export, "unet", "model.onnx")
        example = inputs(a.batch, a.size)
        if a.half:
            # Half precision on the CPU is slow: trace at 64x64 pixels, batch 1 (the axes stay dynamic).
            m = m.half()
            x, t, c = inputs(1, 8)
            example = (x.half(), t, c.half())
        with torch.no_grad():
            torch.onnx.export(
                m,
                example,
                out,
                input_names=["sample", "timestep", "encoder_hidden_states"],
                output_names=["out_sample"],
                dynamic_axes={"sample": {0: "batch_size", 2: "height", 3: "width"}, "encoder_hidden_states": {0: "batch_size"}, "out_sample": {0: "batch_size", 2: "height", 3: "width"}},
                opset_version=17,
                dynamo=False,
            )
        if a.external:
            import onnx

            model = onnx.load(out)
            onnx.save_model(model, out, save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx_data", size_threshold=1024)
        print(json.dumps({"exported": out, "parameters": params}))
    if a.time:
        x, t, c = inputs(a.batch, a.size)
        times = []
        with torch.no_grad():
            for _ in range(a.repeats + 1):
                start = time.perf_counter()
                m(x, t, c)
                times.append(time.perf_counter() - start)
        times = sorted(times[1:])
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "parameters": params, "medianSeconds": times[len(times) // 2], "peakRssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
