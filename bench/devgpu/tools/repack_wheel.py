"""Rebuilds a wheel from its original and an unpacked, edited copy of it; RECORD gets the new hashes and sizes.

Every member keeps the original's order, timestamp and permissions, and is compressed at one fixed level, so
the same inputs give a byte-identical wheel (build.sh prints its sha256; docs/gpu.md records the one that ran).

    python repack_wheel.py ORIGINAL.whl TREE OUT.whl
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path


def record_hash(data: bytes) -> str:
    """The wheel RECORD form of a sha256: urlsafe base64 without padding."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def main() -> None:
    original, tree, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    with zipfile.ZipFile(original) as source:
        members = source.infolist()
        old = {info.filename: source.read(info) for info in members if not info.is_dir()}
    new = {name: (tree / name).read_bytes() for name in old}
    record = next(name for name in new if name.endswith(".dist-info/RECORD"))
    lines = []
    for line in new[record].decode().splitlines(keepends=True):  # keeps RECORD's own line ends (CRLF here)
        name = line.rsplit(",", 2)[0]
        if name in new and name != record and new[name] != old[name]:
            print("changed:", name, len(old[name]), "->", len(new[name]), "bytes")
            ending = line[len(line.rstrip("\r\n")) :]
            line = f"{name},{record_hash(new[name])},{len(new[name])}{ending}"
        lines.append(line)
    new[record] = "".join(lines).encode()
    with zipfile.ZipFile(out, "w") as archive:
        for info in members:
            data = b"" if info.is_dir() else new[info.filename]
            archive.writestr(info, data, compress_type=info.compress_type, compresslevel=9)
    print(out, f"{out.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
