#!/usr/bin/env python3
"""The real huggingface_hub client, driven by the end-to-end tests: HF_ENDPOINT points at Airlock.

    hf_client.py snapshot REPO_TYPE REPO_ID CACHE_DIR   -> {"folder": ..., "files": {path: sha256}}
    hf_client.py download REPO_TYPE REPO_ID PATH CACHE_DIR -> {"path": ...} or {"error": ..., "type": ...}
Prints one JSON line; a refused download is reported, not raised.
"""
import hashlib, json, os, sys

from huggingface_hub import hf_hub_download, snapshot_download

op, repo_type, repo_id = sys.argv[1:4]
try:
    if op == "snapshot":
        folder = snapshot_download(repo_id, repo_type=repo_type, cache_dir=sys.argv[4])
        files = {}
        for d, _, names in os.walk(folder):
            for n in names:
                p = os.path.join(d, n)
                with open(p, "rb") as f:
                    files[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()
        print(json.dumps({"folder": folder, "files": files}))
    else:
        print(json.dumps({"path": hf_hub_download(repo_id, sys.argv[4], repo_type=repo_type, cache_dir=sys.argv[5])}))
except Exception as e:  # the client's own error, as a user would see it
    print(json.dumps({"error": str(e), "type": type(e).__name__}))
