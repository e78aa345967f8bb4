#!/usr/bin/env python3
"""Writes the benchmark's torch checkpoint with torch.save itself: a state dict of float32
tensors totalling about SIZE bytes (argv[2]) at PATH (argv[1]). The bench skips its rows when
torch is not importable."""
import sys

import torch

path, size = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
n = size // 4
# A few layers, as a model's state dict has, the last one taking what is left.
sd = {f"layers.{i}.weight": torch.randn(n // 8) for i in range(4)}
sd["lm_head.weight"] = torch.randn(n - 4 * (n // 8))
torch.save(sd, path)
