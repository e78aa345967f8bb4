#!/usr/bin/env python3
"""Writes the benchmark's dataset shard with Python's tarfile: a WebDataset-style tar of about
SIZE bytes (argv[2]) at PATH (argv[1]), samples of a 96 KiB binary blob (as an image would be), a
caption and a JSON record."""
import io, json, os, sys, tarfile

path, size = sys.argv[1], int(sys.argv[2])
blob = os.urandom(96 << 10)
with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
    i = 0
    while t.fileobj.tell() < size - (100 << 10):
        key = f"sample{i:07d}"
        for name, data in ((f"{key}.jpg", blob[i % 64:] + blob[: i % 64]), (f"{key}.txt", f"caption {i}\n".encode()), (f"{key}.json", json.dumps({"i": i}).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(data))
        i += 1
