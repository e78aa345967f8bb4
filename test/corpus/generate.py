#!/usr/bin/env python3
"""Writes the real-world model-file corpus with the libraries themselves (never hand-assembled bytes).

Run it once per interpreter that has a torch (Debian's python3-torch 1.13 and a torch 2.x build),
then run judge.py with the newest torch to record each file's reference verdict:

    /usr/bin/python3 test/corpus/generate.py      # Debian: torch 1.13, numpy 1.24, sklearn 1.2
    python3 test/corpus/generate.py               # torch 2.x wheel, numpy 2.x, sklearn 1.x
    python3 test/corpus/judge.py                  # writes test/corpus/verdicts.json

Files go to test/corpus/real/torch-<version>/ (checkpoints), numpy-<version>/ (arrays),
sklearn-<version>/, safetensors-<version>/, gguf-<version>/ (with the newest interpreter, which
has the safetensors and gguf packages) and datasets/ (archives of benign and of refused content). Everything is seeded,
so a rerun writes the same tensors; the containers carry the writer's own metadata.
"""
import bz2, gzip, io, json, lzma, os, pickle, subprocess, sys, tarfile, zipfile, argparse, dataclasses

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "real")
TV = torch.__version__.split("+")[0].split("a")[0]
TV = ".".join(TV.split(".")[:2])
OUT = os.path.join(ROOT, f"torch-{TV}")
NOUT = os.path.join(ROOT, f"numpy-{np.__version__.split('.')[0]}")
torch.manual_seed(0)
np.random.seed(0)


def path(*parts):
    p = os.path.join(*parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(32, 8)
        self.conv = nn.Conv1d(8, 8, 3)
        self.norm = nn.BatchNorm1d(8)
        self.proj = nn.Linear(8, 16)
        self.head = nn.Linear(8, 32, bias=False)
        self.head.weight = self.embed.weight  # tied weights

    def forward(self, x):
        return self.head(self.norm(self.conv(self.embed(x).transpose(1, 2))).transpose(1, 2))


def save(obj, name, legacy=False):
    kw = {"_use_new_zipfile_serialization": False} if legacy else {}
    torch.save(obj, path(OUT, name), **kw)


def checkpoints():
    model = Tiny()
    sd = model.state_dict()
    for legacy in (False, True):
        sfx = "-legacy" if legacy else ""
        save(sd, f"pytorch_model{sfx}.bin", legacy)
        dtypes = {str(d).replace("torch.", ""): torch.arange(6).to(d).reshape(2, 3) for d in (
            torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int8, torch.int16, torch.int32,
            torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128)}
        save(dtypes, f"dtypes{sfx}.pt", legacy)
        base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
        views = {
            "scalar": torch.tensor(3.5),
            "empty": torch.empty(0, 4),
            "base": base,
            "transposed": base.t(),
            "offset_view": base[1:, 2:],
            "strided": base[:, ::2],
            "flat": base.view(-1)[5:17],
        }
        save(views, f"views{sfx}.pt", legacy)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model(torch.randint(0, 32, (2, 5))).sum().backward()
        opt.step()
        save(opt.state_dict(), f"optimizer{sfx}.pt", legacy)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
        save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
              "epoch": 3, "global_step": 1200, "best_loss": 0.25, "tags": ["tiny", "demo"],
              "config": {"hidden": 8, "dropout": 0.1, "name": "tiny"}}, f"checkpoint{sfx}.pt", legacy)
        save({"w": nn.Parameter(torch.randn(3, 3)), "b": nn.Parameter(torch.zeros(3), requires_grad=False)},
             f"parameters{sfx}.pt", legacy)
        qmodel = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)), {nn.Linear}, dtype=torch.qint8)
        save(qmodel.state_dict(), f"quantized{sfx}.pt", legacy)
        save({"coo": torch.randn(4, 4).relu().to_sparse(), "csr": torch.randn(4, 4).relu().to_sparse_csr()},
             f"sparse{sfx}.pt", legacy)
        save(torch.arange(10), f"tensor{sfx}.pt", legacy)
        save(model, f"whole_module{sfx}.pt", legacy)  # a pickled nn.Module: the judge refuses it
    # A Hub-style sharded checkpoint (what transformers' save_pretrained writes for .bin shards).
    keys = list(sd)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    weight_map = {}
    for fname, ks in shards.items():
        torch.save({k: sd[k] for k in ks}, path(OUT, "sharded", fname))
        weight_map.update({k: fname for k in ks})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    with open(path(OUT, "sharded", "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(path(OUT, "sharded", "config.json"), "w") as f:
        json.dump({"architectures": ["Tiny"], "model_type": "tiny", "hidden_size": 8, "vocab_size": 32, "torch_dtype": "float32"}, f, indent=2)
        f.write("\n")
    # What a Trainer leaves beside the weights: training_args.bin is a pickled dataclass.
    torch.save(TrainingArgs(), path(OUT, "training_args.bin"))
    torch.save({"python": [1, 2, 3], "torch": torch.get_rng_state()}, path(OUT, "rng_state.pth"))


@dataclasses.dataclass
class TrainingArgs:
    output_dir: str = "out"
    learning_rate: float = 5e-5
    num_train_epochs: int = 3


def arrays():
    a = np.random.rand(3, 4).astype(np.float32)
    np.save(path(NOUT, "array.npy"), a)
    np.save(path(NOUT, "fortran.npy"), np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)))
    np.save(path(NOUT, "structured.npy"), np.array([(1, 2.0), (3, 4.0)], dtype=[("id", "<i4"), ("score", "<f8")]))
    np.save(path(NOUT, "scalar.npy"), np.float64(2.5))
    np.savez(path(NOUT, "arrays.npz"), weights=a, ids=np.arange(5), mask=np.array([True, False]))
    np.savez_compressed(path(NOUT, "arrays_compressed.npz"), weights=a, ids=np.arange(5))
    np.save(path(NOUT, "objects.npy"), np.array([{"a": 1}, None], dtype=object), allow_pickle=True)  # refused by np.load(allow_pickle=False)
    np.savez(path(NOUT, "objects.npz"), ok=a, bad=np.array([1, "x", None], dtype=object))


class Unseekable(io.RawIOBase):
    """A write-only stream (a pipe, a socket, an upload): zipfile then writes data descriptors."""
    def __init__(self, f):
        self.f = f
    def writable(self):
        return True
    def write(self, b):
        return self.f.write(b)


def streamed_zips():
    """Zips written where the writer cannot seek back: data descriptors (flag 0x8), zeros and ZIP64
    extra fields in the local headers; and an archive comment."""
    out = os.path.join(ROOT, "zipfile")
    with open(path(out, "streamed.npz"), "wb") as f:
        np.savez(Unseekable(f), weights=np.arange(12, dtype=np.float32).reshape(3, 4), ids=np.arange(5))
    with open(path(out, "streamed.zip"), "wb") as f:
        with zipfile.ZipFile(Unseekable(f), "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("notes.txt", "written to a pipe\n" * 50)
            with z.open("data/train.jsonl", "w", force_zip64=True) as m:
                m.write(b'{"text": "a"}\n' * 100)
    with zipfile.ZipFile(path(out, "commented.zip"), "w", zipfile.ZIP_STORED) as z:
        z.comment = b"an archive comment, as some writers leave"
        z.writestr("README.md", "# hello\n")


def sklearn_models():
    import joblib
    import sklearn
    from sklearn.linear_model import LogisticRegression
    x = np.random.rand(20, 3)
    y = (x[:, 0] > 0.5).astype(int)
    m = LogisticRegression().fit(x, y)
    joblib.dump(m, path(ROOT, f"sklearn-{sklearn.__version__}", "model.joblib"))
    with open(path(ROOT, f"sklearn-{sklearn.__version__}", "model.pkl"), "wb") as f:
        pickle.dump(m, f)


def tar_bytes(members, mode="w"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def datasets():
    out = os.path.join(ROOT, "datasets")
    rng = np.random.default_rng(0)
    lines = "".join(json.dumps({"id": i, "text": f"example {i} " + "lorem ipsum " * (i % 7), "label": i % 3}) + "\n" for i in range(400)).encode()
    members = []
    for i in range(40):  # a WebDataset shard: samples grouped by key
        key = f"sample{i:06d}"
        members += [(f"{key}.jpg", rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()),
                    (f"{key}.txt", f"caption {i}\n".encode()),
                    (f"{key}.json", json.dumps({"width": 32, "height": 32, "i": i}).encode()),
                    (f"{key}.cls", str(i % 10).encode())]
    with open(path(out, "shard-000000.tar"), "wb") as f:
        f.write(tar_bytes(members))
    with open(path(out, "train.jsonl.gz"), "wb") as f:
        f.write(gzip.compress(lines, mtime=0))
    with open(path(out, "train.jsonl.bz2"), "wb") as f:
        f.write(bz2.compress(lines))
    with open(path(out, "train.jsonl.xz"), "wb") as f:
        f.write(lzma.compress(lines))
    with open(path(out, "train.jsonl"), "wb") as f:
        f.write(lines)
    subprocess.run(["zstd", "-q", "-f", "-19", path(out, "train.jsonl"), "-o", path(out, "train.jsonl.zst")], check=True)
    os.remove(path(out, "train.jsonl"))
    with open(path(out, "images.tar.gz"), "wb") as f:
        f.write(tar_bytes(members[:40], "w:gz"))
    npbuf = io.BytesIO()
    np.save(npbuf, rng.random((4, 4)).astype(np.float32))
    with zipfile.ZipFile(path(out, "bundle.zip"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("README.txt", "a benign bundle\n")
        z.writestr("data/train.jsonl", lines)
        z.writestr("data/emb.npy", npbuf.getvalue())
    weights = io.BytesIO()
    torch.save({"w": torch.ones(4)}, weights)
    with open(path(out, "weights.tar"), "wb") as f:
        f.write(tar_bytes([("model/pytorch_model.bin", weights.getvalue()), ("model/config.json", b'{"model_type": "tiny"}')]))
    # Refused: a WebDataset-style .pyd member is a pickle, here of an object the judge refuses.
    bad = pickle.dumps(argparse.Namespace(lr=0.1), protocol=2)
    with open(path(out, "pickled-sample.tar"), "wb") as f:
        f.write(tar_bytes(members[:8] + [("sample000099.pyd", bad)]))
    with open(path(out, "pickled-sample.tar.zst"), "wb") as f:
        f.write(subprocess.run(["zstd", "-q", "-c"], input=tar_bytes(members[:8] + [("sample000099.pyd", bad)]), check=True, capture_output=True).stdout)


def safetensors_files():
    """safetensors' own writers (torch and numpy flavours), and a Hub-style sharded model."""
    import safetensors
    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_pt
    out = os.path.join(ROOT, f"safetensors-{safetensors.__version__}")
    sd = {k: v.contiguous().clone() for k, v in Tiny().state_dict().items() if k != "head.weight"}  # tied weights are saved once
    save_pt(sd, path(out, "model.safetensors"), metadata={"format": "pt"})
    dtypes = {str(d).replace("torch.", ""): torch.arange(6).to(d).reshape(2, 3) for d in (
        torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int8, torch.int16, torch.int32, torch.int64,
        torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2)}
    dtypes["empty"] = torch.empty(0, 4)
    dtypes["scalar"] = torch.tensor(1.5)
    save_pt(dtypes, path(out, "dtypes.safetensors"))
    save_np({"emb": np.random.rand(4, 8).astype(np.float32), "ids": np.arange(5)}, path(out, "numpy.safetensors"))
    keys = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for fname, ks in shards.items():
        save_pt({k: sd[k] for k in ks}, path(out, "sharded", fname), metadata={"format": "pt"})
    with open(path(out, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(t.numel() * t.element_size() for t in sd.values())},
                   "weight_map": {k: fname for fname, ks in shards.items() for k in ks}}, f, indent=2, sort_keys=True)
        f.write("\n")


def gguf_files():
    """llama.cpp's gguf-py writer: metadata, a tokenizer with a benign chat template, tensors in F32, F16 and Q8_0."""
    import gguf
    from gguf.quants import quantize
    from importlib.metadata import version
    out = os.path.join(ROOT, f"gguf-{version('gguf')}")
    w = gguf.GGUFWriter(path(out, "tiny.gguf"), "llama")
    w.add_name("tiny")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}".encode() for i in range(32)])
    w.add_token_scores([0.0] * 32)
    w.add_chat_template("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}<|assistant|>")
    w.add_tensor("token_embd.weight", np.random.rand(32, 8).astype(np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.random.rand(8, 8).astype(np.float16))
    q = np.random.rand(8, 64).astype(np.float32)
    w.add_tensor("blk.0.ffn_up.weight", quantize(q, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    checkpoints()
    arrays()
    sklearn_models()
    if TV.startswith("2"):
        datasets()
        safetensors_files()
        gguf_files()
        streamed_zips()
    print(f"wrote torch {torch.__version__} / numpy {np.__version__} files under {ROOT}")
