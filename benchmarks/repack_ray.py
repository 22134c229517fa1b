"""Repack a ray wheel without parts a local Ray Tune sweep never uses, rewriting RECORD.

Usage: python benchmarks/repack_ray.py IN.whl OUT.whl [--no-strip]

The ray 2.60.0 wheel (79 MB) does not fit one 64 MiB transfer to the offline GPU machine; repacked it is
37 MB (``benchmarks/gpu_stage_sweep.sh`` calls this). Seen there on 2026-11-30: a local Ray runtime started
from it and ran a GPU task (the sweep's kernel warm-up); no trial had started when the call's time ran out.

Removed (prefixes inside the wheel):
  ray/jars/                    Java runtime jar (32 MB compressed), only for Java workers
  ray/dashboard/client/build/  dashboard web UI (JS/fonts); the project starts Ray with
                               include_dashboard=False, so the dashboard head runs with
                               --disable-frontend; a missing build is also tolerated
                               (FrontendNotFoundError is caught and logged)
  ray/rllib/, ray/serve/, ray/llm/  libraries never imported by ray.tune/ray.train/ray.data
                               at import time (only lazily, for RLlib trainables, Serve, LLM)
Stripped (strip --strip-unneeded, keeps .dynsym so dynamic linking is unchanged):
  ray/_raylet.so, ray/core/src/ray/gcs/gcs_server, ray/core/src/ray/raylet/raylet,
  ray/core/libjemalloc.so  (only the static symbol table goes: C++ crash backtraces lose names)
Every remaining entry keeps its name, order, timestamp and Unix mode bits (the executables keep +x);
RECORD gets fresh sha256/size lines for changed files and loses lines of removed files; entries are
deflated at level 9.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile

REMOVE = ("ray/jars/", "ray/dashboard/client/build/", "ray/rllib/", "ray/serve/", "ray/llm/")
STRIP = (
    "ray/_raylet.so",
    "ray/core/src/ray/gcs/gcs_server",
    "ray/core/src/ray/raylet/raylet",
    "ray/core/libjemalloc.so",
)


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _strip(data: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in"), os.path.join(d, "out")
        with open(src, "wb") as f:
            f.write(data)
        subprocess.run(["strip", "--strip-unneeded", "-o", dst, src], check=True)
        with open(dst, "rb") as f:
            return f.read()


def main(src: str, dst: str, strip: bool = True) -> None:
    zin = zipfile.ZipFile(src)
    names = zin.namelist()
    record_name = next(n for n in names if n.count("/") == 1 and n.endswith(".dist-info/RECORD"))
    kept, removed, removed_bytes = [], [], 0
    for info in zin.infolist():
        if info.filename.startswith(REMOVE):
            removed.append(info.filename)
            removed_bytes += info.compress_size
        else:
            kept.append(info)
    new_rows: dict[str, tuple[str, str]] = {}
    tmp = dst + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for info in kept:
            if info.filename == record_name:
                continue
            data = zin.read(info)
            if strip and info.filename in STRIP:
                before = len(data)
                data = _strip(data)
                print(f"stripped {info.filename}: {before} -> {len(data)} bytes", file=sys.stderr)
            zi = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            zi.external_attr = info.external_attr
            zi.create_system = info.create_system
            zi.compress_type = zipfile.ZIP_STORED if info.is_dir() else zipfile.ZIP_DEFLATED
            zout.writestr(zi, data, compress_type=zi.compress_type, compresslevel=9)
            if not info.is_dir():
                new_rows[info.filename] = (_hash(data), str(len(data)))
        # RECORD: keep the original order, drop removed files, refresh hashes and sizes
        old = list(csv.reader(io.StringIO(zin.read(record_name).decode())))
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        seen = set()
        for row in old:
            if not row:
                continue
            name = row[0]
            if name == record_name:
                w.writerow([name, "", ""])
            elif name in new_rows:
                w.writerow([name, *new_rows[name]])
            seen.add(name)
        missing = set(new_rows) - seen
        for name in sorted(missing):  # files present in the zip but absent from the old RECORD
            w.writerow([name, *new_rows[name]])
        rinfo = zin.getinfo(record_name)
        zi = zipfile.ZipInfo(record_name, date_time=rinfo.date_time)
        zi.external_attr = rinfo.external_attr
        zout.writestr(zi, out.getvalue().encode(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    os.replace(tmp, dst)
    print(
        f"removed {len(removed)} entries ({removed_bytes / 1e6:.1f} MB compressed); "
        f"{os.path.getsize(src) / 1e6:.1f} MB -> {os.path.getsize(dst) / 1e6:.1f} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(args[0], args[1], strip="--no-strip" not in sys.argv)
