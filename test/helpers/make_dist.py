"""Build real distribution files for the tests with the standard library only.

usage: python3 make_dist.py OUT_DIR SPEC_JSON
SPEC_JSON: {"name": "tinylib", "version": "1.0", "kind": "wheel"|"sdist",
            "requires_dist": ["dep>=1"], "requires_python": ">=3.8", "module": "tinylib"}
Prints the path of the file written. The wheel is a valid PEP 427 archive (METADATA, WHEEL,
RECORD with sha256 entries) that pip installs; the sdist is a PEP 517 tree with a setuptools
backend and a PKG-INFO.
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


def sdist(out, spec):
    dist = re.sub(r"[-_.]+", "_", spec["name"])
    module = spec.get("module", dist.lower())
    ver = spec["version"]
    root = f"{dist}-{ver}"
    reqs = spec.get("requires_dist", [])
    setup_cfg = f"[metadata]\nname = {spec['name']}\nversion = {ver}\n\n[options]\npackages = {module}\n"
    if reqs:
        setup_cfg += "install_requires =\n" + "".join(f"    {r}\n" for r in reqs)
    if spec.get("requires_python"):
        setup_cfg += f"python_requires = {spec['requires_python']}\n"
    files = {
        f"{root}/PKG-INFO": metadata(spec).encode(),
        f"{root}/pyproject.toml": b'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n',
        f"{root}/setup.cfg": setup_cfg.encode(),
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
