"""Build real distribution files for the tests with the standard library only.

usage: python3 make_dist.py OUT_DIR SPEC_JSON
SPEC_JSON: {"name": "tinylib", "version": "1.0", "kind": "wheel"|"sdist",
            "requires_dist": ["dep>=1"], "requires_python": ">=3.8", "module": "tinylib"}
Prints the path of the file written. The wheel is a valid PEP 427 archive (METADATA, WHEEL,
RECORD with sha256 entries) that pip installs; the sdist is a PEP 517 tree with a PKG-INFO and
an in-tree build backend (PEP 517 `backend-path`) written with the standard library, so pip can
build it with no build dependencies from any index.
"""
import base64
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import zipfile


def metadata(spec):
    lines = ["Metadata-Version: 2.1", f"Name: {spec['name']}", f"Version: {spec['version']}"]
    if spec.get("requires_python"):
        lines.append(f"Requires-Python: {spec['requires_python']}")
    for r in spec.get("requires_dist", []):
        lines.append(f"Requires-Dist: {r}")
    return "\n".join(lines) + "\n\n"


def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def wheel(out, spec):
    dist = re.sub(r"[-_.]+", "_", spec["name"])
    module = spec.get("module", dist.lower())
    ver = spec["version"]
    info = f"{dist}-{ver}.dist-info"
    files = {
        f"{module}/__init__.py": f"__version__ = {ver!r}\n".encode(),
        f"{info}/METADATA": metadata(spec).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: airlock-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [record_line(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = os.path.join(out, f"{dist}-{ver}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in files.items():
            z.writestr(zipfile.ZipInfo(p, date_time=(2024, 1, 1, 0, 0, 0)), d)
    # The core metadata file served beside the wheel (PEP 658).
    with open(path + ".metadata", "wb") as f:
        f.write(files[f"{info}/METADATA"])
    return path


BACKEND = r'''
"""In-tree PEP 517 backend: builds this project's wheel with the standard library only."""
import base64, hashlib, os, zipfile

NAME, DIST, MODULE, VERSION = {name!r}, {dist!r}, {module!r}, {version!r}
METADATA = {metadata!r}
INFO = f"{{DIST}}-{{VERSION}}.dist-info"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    os.makedirs(os.path.join(metadata_directory, INFO), exist_ok=True)
    with open(os.path.join(metadata_directory, INFO, "METADATA"), "w") as f:
        f.write(METADATA)
    return INFO


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    here = os.path.dirname(os.path.abspath(__file__))
    files = {{}}
    with open(os.path.join(here, MODULE, "__init__.py"), "rb") as f:
        files[f"{{MODULE}}/__init__.py"] = f.read()
    files[f"{{INFO}}/METADATA"] = METADATA.encode()
    files[f"{{INFO}}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: airlock-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    rec = []
    for p, d in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
        rec.append(f"{{p}},sha256={{h}},{{len(d)}}")
    rec.append(f"{{INFO}}/RECORD,,")
    files[f"{{INFO}}/RECORD"] = ("\n".join(rec) + "\n").encode()
    name = f"{{DIST}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
    return name
'''


def sdist(out, spec):
    dist = re.sub(r"[-_.]+", "_", spec["name"])
    module = spec.get("module", dist.lower())
    ver = spec["version"]
    root = f"{dist}-{ver}"
    md = metadata(spec)
    files = {
        f"{root}/PKG-INFO": md.encode(),
        f"{root}/pyproject.toml": b'[build-system]\nrequires = []\nbuild-backend = "_airlock_backend"\nbackend-path = ["."]\n',
        f"{root}/_airlock_backend.py": BACKEND.format(name=spec["name"], dist=dist, module=module, version=ver, metadata=md).encode(),
        f"{root}/{module}/__init__.py": f"__version__ = {ver!r}\n".encode(),
    }
    path = os.path.join(out, f"{dist}-{ver}.tar.gz")
    with tarfile.open(path, "w:gz") as t:
        for p, d in files.items():
            ti = tarfile.TarInfo(p)
            ti.size = len(d)
            ti.mtime = 1704067200
            t.addfile(ti, io.BytesIO(d))
    return path


if __name__ == "__main__":
    out, spec = sys.argv[1], json.loads(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    print((wheel if spec.get("kind", "wheel") == "wheel" else sdist)(out, spec))
