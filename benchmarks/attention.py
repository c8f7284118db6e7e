"""Which attention kernel is fastest at the shapes of a preset? (the evidence for model.attn_impl)

    .venv/bin/python benchmarks/attention.py [--preset experiments/configs/lab.yaml]
        [--precisions fp32,bf16] [--threads 1] [--rounds 15] [--device cpu]

Times softmax(q k^T / sqrt(d)) v at the three shapes one dual step runs: the student encoder on
the visible tokens and the decoder on all tokens (forward + backward), the teachers on all
tokens (forward, no grad); batch = optim.batch_size x data.views. Three implementations:
'sdpa' (F.scaled_dot_product_attention, backend picked by torch; the CPU flash kernel here),
'sdpa_math' (SDPA forced to its math backend) and 'math' (timm's explicit path: q @ k^T,
softmax, @ v). Round-robin, median per call, and the paired ratio to 'sdpa'.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from plaml_lab.config import load_config
from plaml_lab.method.masking import num_visible


def explicit(q, k, v):
    a = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return a.softmax(-1) @ v


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def sdpa_math(q, k, v):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


IMPLS = {"sdpa": sdpa, "sdpa_math": sdpa_math, "math": explicit}


def shapes(cfg) -> dict[str, tuple[int, int, int, int, bool]]:
    """name -> (batch, heads, tokens, head_dim, with backward)."""
    m = cfg.model
    b = cfg.optim.batch_size * cfg.data.views
    L = (m.img_size // m.patch_size) ** 2
    keep = num_visible(L, cfg.mask.ratio)
    return {"student encoder": (b, m.num_heads, 1 + keep, m.embed_dim // m.num_heads, True),
            "decoder": (b, m.decoder_num_heads, 1 + L, m.decoder_embed_dim // m.decoder_num_heads,
                        True),
            "teacher": (b, m.num_heads, 1 + L, m.embed_dim // m.num_heads, False)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="experiments/configs/lab.yaml")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.preset)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"preset {args.preset}, device {dev}, threads {args.threads}, {args.rounds} rounds; "
          "ms per call (median), paired ratio to sdpa in brackets")
    for prec in args.precisions.split(","):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[prec]
        for name, (b, h, n, d, grad) in shapes(cfg).items():
            q, k, v = (torch.randn(b, h, n, d, dtype=dtype, device=dev, requires_grad=grad)
                       for _ in range(3))
            times: dict[str, list[float]] = {i: [] for i in IMPLS}
            for r in range(args.rounds + 1):
                for i, f in IMPLS.items():
                    sync()
                    t0 = time.perf_counter()
                    if grad:
                        f(q, k, v).sum().backward()
                    else:
                        with torch.no_grad():
                            f(q, k, v)
                    sync()
                    if r:  # the first round warms up
                        times[i].append(time.perf_counter() - t0)
            cells = []
            for i in IMPLS:
                ratio = statistics.median(a / s for a, s in zip(times[i], times["sdpa"]))
                cells.append(f"{i} {1e3 * statistics.median(times[i]):7.2f} [{ratio:.2f}]")
            what = "fwd+bwd" if grad else "fwd"
            print(f"{prec} {name:16s} ({b}x{h}x{n}x{d}, {what:7s}): " + "  ".join(cells))


if __name__ == "__main__":
    main()
