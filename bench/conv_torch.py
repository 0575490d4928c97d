"""One 3x3 convolution (padding 1) and its gradients in PyTorch, for bench/conv.ts.

Usage: python bench/conv_torch.py N C H O REPEATS
Prints one JSON line: {"forward_ms": [...], "backward_ms": [...], "torch": version}
(backward: the input and weight gradients of sum(y * g), as Diffuse's graph computes them).
"""
import json
import sys
import time

import torch

torch.set_num_threads(2)
n, c, h, o, repeats = (int(v) for v in sys.argv[1:6])
g = torch.Generator().manual_seed(0)
x = torch.randn(n, c, h, h, generator=g, requires_grad=True)
w = torch.randn(o, c, 3, 3, generator=g, requires_grad=True)
gy = torch.randn(n, o, h, h, generator=g)
fwd, bwd = [], []
for _ in range(repeats):
    t0 = time.perf_counter()
    with torch.no_grad():
        torch.nn.functional.conv2d(x, w, padding=1)
    fwd.append((time.perf_counter() - t0) * 1000)
for _ in range(repeats):
    y = torch.nn.functional.conv2d(x, w, padding=1)
    t0 = time.perf_counter()
    dx, dw = torch.autograd.grad(y, [x, w], gy)
    bwd.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"forward_ms": fwd, "backward_ms": bwd, "torch": torch.__version__}))
