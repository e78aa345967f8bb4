"""What Python's tarfile (what datasets and WebDataset read shards with) reads of a tar.

Reads the tar named by argv[1] (or stdin), opened with tarfile.open(mode="r:*"), and prints one
JSON line: every member with its name, type, size and the first 64 bytes extractfile() gives.
"""
import io
import json
import sys
import tarfile

data = open(sys.argv[1], "rb").read() if len(sys.argv) > 1 else sys.stdin.buffer.read()
out = []
try:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        for m in tf:
            f = tf.extractfile(m)
            head = f.read(64) if f else b""
            out.append({"name": m.name, "type": m.type.decode("latin1"), "size": m.size, "head": head.hex()})
except Exception as e:  # a tar Python cannot read: what it read before the error
    out.append({"error": repr(e)})
print(json.dumps(out))
