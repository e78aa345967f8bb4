#!/usr/bin/env python3
"""Records the reference verdict of every corpus file: what the real consumer does with it.

- torch checkpoints and other pickles: torch.load(f, weights_only=True) of this interpreter's torch
  (run it with the newest one): loads -> "serve", refuses -> "refuse".
- .npy / .npz: numpy.load(f, allow_pickle=False), every array read.
- JSON: json.loads.
- .safetensors: safetensors.torch.load_file (every tensor); .gguf: gguf-py's GGUFReader (llama.cpp's
  reference reader), every tensor's data read.
- archives (tar, gzip, bzip2, xz, zstd, zip that is neither a torch checkpoint nor an npz): opened
  with Python's own readers (the zstd command line for zstd) and every member judged by these same
  rules: the archive is refused when any member is.
- anything else (neither named nor framed as a pickle: text, images) is data and is served.
Nothing here unpickles outside torch's weights-only unpickler; refused files are never loaded.
"""
import bz2, gzip, hashlib, io, json, lzma, os, subprocess, sys, tarfile, zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "real")


def judge_numpy(data, name):
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            for k in loaded.files:
                loaded[k]
        return "serve", f"numpy.load(allow_pickle=False) {np.__version__}: loads"
    except ValueError as e:
        return "refuse", f"numpy.load(allow_pickle=False) {np.__version__}: {str(e).splitlines()[0]}"


def judge_torch(data):
    try:
        torch.load(io.BytesIO(data), weights_only=True)
        return "serve", f"torch.load(weights_only=True) {torch.__version__}: loads"
    except Exception as e:  # the weights-only unpickler's refusal (UnpicklingError) and format errors alike
        text = " ".join(l.strip() for l in str(e).splitlines() if l.strip())
        at = text.find("WeightsUnpickler error:")
        return "refuse", f"torch.load(weights_only=True) {torch.__version__}: {text[at:at + 300]}"


def write_temp(data):
    """GGUFReader memory-maps a path."""
    import tempfile
    f = tempfile.NamedTemporaryFile(suffix=".gguf", delete=False)
    f.write(data)
    f.close()
    return f.name


def decompress(data):
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return subprocess.run(["zstd", "-q", "-d", "-c"], input=data, check=True, capture_output=True).stdout
    return None


def judge(data, name, depth=0):
    inner = decompress(data)
    if inner is not None:
        v, why = judge(inner, name.rsplit(".", 1)[0], depth + 1)
        return v, why
    if len(data) >= 262 and data[257:262] == b"ustar":
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            for m in t.getmembers():
                if m.isfile():
                    v, why = judge(t.extractfile(m).read(), m.name, depth + 1)
                    if v == "refuse":
                        return v, f"member {m.name}: {why}"
        return "serve", "tarfile: every member served"
    if data[:6] == b"\x93NUMPY":
        return judge_numpy(data, name)
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            if any(n.endswith("/data.pkl") for n in names):
                return judge_torch(data)
            if names and all(n.endswith(".npy") for n in names):
                return judge_numpy(data, name)
            for n in names:
                v, why = judge(z.read(n), n, depth + 1)
                if v == "refuse":
                    return v, f"member {n}: {why}"
        return "serve", "zipfile: every member served"
    if name.endswith(".safetensors"):
        from safetensors.torch import load
        import safetensors
        try:
            load(data)
            return "serve", f"safetensors.torch.load {safetensors.__version__}: loads"
        except Exception as e:
            return "refuse", f"safetensors.torch.load: {e}"
    if data[:4] == b"GGUF":
        import gguf
        try:
            r = gguf.GGUFReader(write_temp(data))
            for t in r.tensors:
                bytes(t.data.tobytes())
            return "serve", f"gguf.GGUFReader: reads {len(r.tensors)} tensors"
        except Exception as e:
            return "refuse", f"gguf.GGUFReader: {e}"
    if name.endswith(".json"):
        json.loads(data)
        return "serve", "json.loads: parses"
    # Pickles (raw, joblib, legacy torch): the weights-only loader decides. What is a pickle is
    # decided the way its consumers decide it: a pickle's name, or a pickle protocol header; text,
    # images and other data are never unpickled by anyone.
    if name.endswith(PICKLE_NAMES) or (len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5):
        return judge_torch(data)
    return "serve", "data: neither named nor framed as a pickle"


PICKLE_NAMES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".pyd")


def main():
    files = {}
    for d, _, names in os.walk(ROOT):
        for n in sorted(names):
            p = os.path.join(d, n)
            rel = os.path.relpath(p, ROOT)
            with open(p, "rb") as f:
                data = f.read()
            v, why = judge(data, n)
            files[rel] = {"verdict": v, "judge": why, "sha256": hashlib.sha256(data).hexdigest()}
    out = {"judge": {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
           "files": dict(sorted(files.items()))}
    with open(os.path.join(HERE, "verdicts.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    for rel, v in sorted(files.items()):
        print(f"{v['verdict']:7} {rel}: {v['judge']}")


if __name__ == "__main__":
    main()
