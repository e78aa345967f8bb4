"""Write an OSV export's all.zip the way osv.dev does: one <ID>.json entry per record, deflated.

Usage: make_osv_zip.py OUT.zip RECORDS_DIR  (every *.json in RECORDS_DIR, in name order)
"""
import os
import sys
import zipfile

out, src = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for name in sorted(os.listdir(src)):
        if name.endswith(".json"):
            z.write(os.path.join(src, name), arcname=name)
