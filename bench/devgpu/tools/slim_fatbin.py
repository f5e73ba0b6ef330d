"""Lists, or keeps only one architecture of, the GPU code in a shared library's .nv_fatbin section.

Why: the official faiss-gpu wheel's libfaiss.so holds SASS for sm_70, 75, 80, 86, 89 and 90 plus sm_90 PTX
(199 MB; a 129 MiB wheel). A lent GPU machine only gets what travels in a 64 MiB carry, so build.sh keeps the
one architecture that machine has (sm_90 for H100/H200), which shrinks the wheel to about 33 MiB. `--list`
prints what a library holds (how docs/gpu.md checked which GPUs a FAISS wheel can run on).

Layout: each fat binary container in .nv_fatbin (magic 0xBA55ED50: u32 magic, u16 version, u16 header size,
u64 payload size) holds entries (u16 kind 1=PTX 2=ELF, u16, u32 entry header size, u64 payload size, ..., u32
arch at +28). The CUDA runtime finds each container by address (from .nvFatBinSegment) and walks its entries up
to the payload size, so moving the kept entries to the front, shrinking the payload size and zeroing the rest
leaves every address valid; the zeros compress to nothing. The output has the input's size.

    python slim_fatbin.py IN.so --list
    python slim_fatbin.py IN.so OUT.so --arch 90 [--keep-ptx]
"""

from __future__ import annotations

import argparse
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

MAGIC = 0xBA55ED50
KINDS = {1: "PTX", 2: "ELF"}


def section(path: Path, name: str) -> tuple[int, int]:
    """(file offset, size) of section `name`, from readelf."""
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if f" {name} " in line:
            fields = line.split("]", 1)[1].split()
            return int(fields[3], 16), int(fields[4], 16)
    raise SystemExit(f"{path}: no {name} section")


def containers(data: bytearray, start: int, size: int) -> Iterator[tuple[int, int, int, int]]:
    """(offset, version, header size, payload size) of each fat binary container in data[start:start+size]."""
    pos, end = start, start + size
    while pos + 16 <= end:
        magic, version, header, payload = struct.unpack_from("<IHHQ", data, pos)
        if magic != MAGIC:  # padding between containers (they are 8-byte aligned)
            pos += 8
            continue
        yield pos, version, header, payload
        pos += header + payload


def entries(data: bytearray, first: int, end: int) -> Iterator[tuple[int, str, int, int]]:
    """(offset, kind, arch, whole size incl. its header) of each entry between `first` and `end`."""
    p = first
    while p < end:
        kind, _, entry_header, entry_size = struct.unpack_from("<HHIQ", data, p)
        arch = struct.unpack_from("<I", data, p + 28)[0]
        yield p, KINDS.get(kind, str(kind)), arch, entry_header + entry_size
        p += entry_header + entry_size


def inventory(data: bytearray, start: int, size: int) -> Counter:
    """Entry counts by (kind, arch), and the number of containers."""
    stats: Counter = Counter()
    for pos, _, header, payload in containers(data, start, size):
        stats["containers"] += 1
        for _, kind, arch, _ in entries(data, pos + header, pos + header + payload):
            stats[(kind, f"sm_{arch}")] += 1
    return stats


def slim(data: bytearray, start: int, size: int, arch: int, keep_ptx: bool) -> Counter:
    """Keeps, in every container, only the sm_`arch` ELF (and PTX with `keep_ptx`) entries; edits `data`."""
    stats: Counter = Counter()
    for pos, version, header, payload in containers(data, start, size):
        first, end = pos + header, pos + header + payload
        kept = bytearray()
        for p, kind, entry_arch, whole in entries(data, first, end):
            keep = entry_arch == arch and (kind == "ELF" or (kind == "PTX" and keep_ptx))
            stats[("kept" if keep else "dropped", kind, entry_arch)] += 1
            if keep:
                kept += data[p : p + whole]
        if not kept:
            raise SystemExit(f"container at {pos:#x} has no sm_{arch} code; refusing to empty it")
        data[first:end] = kept + bytes(end - first - len(kept))
        struct.pack_into("<IHHQ", data, pos, MAGIC, version, header, len(kept))
        stats["containers"] += 1
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path, nargs="?", help="where to write the slimmed library (not with --list)")
    parser.add_argument("--list", action="store_true", help="only print the entries by kind and architecture")
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--keep-ptx", action="store_true", help="also keep sm_<arch> PTX (JIT for newer GPUs)")
    args = parser.parse_args()
    data = bytearray(args.src.read_bytes())
    start, size = section(args.src, ".nv_fatbin")
    if args.list:
        stats = inventory(data, start, size)
    elif args.dst is None:
        parser.error("give OUT.so, or --list")
    else:
        stats = slim(data, start, size, args.arch, args.keep_ptx)
        args.dst.write_bytes(data)
    for key, count in sorted(stats.items(), key=str):
        print(key, count)


if __name__ == "__main__":
    main()
