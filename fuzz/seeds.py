#!/usr/bin/env python3
"""Seed a fuzz target's corpus from this system's own files (run by
scripts/fuzz.sh when the corpus is empty).

ELF targets get whole shared libraries from /usr/lib/x86_64-linux-gnu (the
ELF-file path of dynload::fuzzing) and, made from the same libraries, raw
images (its raw path: the first PT_LOAD segment, which holds the dynamic
tables, behind the header the target reads; see RAW_TABLES and RAW_DYNAMIC
in crates/dynload/src/fuzzing.rs). ld_so_cache gets /etc/ld.so.cache,
truncated copies, and old-format files built from it.
"""

import os
import struct
import sys

LIBDIR = "/usr/lib/x86_64-linux-gnu"
MAX_FILE = 8 << 20  # keep in step with -max_len in scripts/fuzz.sh
MAX_SPAN = 64 << 20  # dynload::fuzzing::MAX_SPAN
NAMED = [
    "libc.so.6",
    "libz.so.1",
    "libstdc++.so.6",
    "libpython3.11.so.1.0",
    "libcrypto.so.3",
    "libm.so.6",
    "libgcc_s.so.1",
    "libsqlite3.so.0",
    "libssl.so.3",
    "libffi.so.8",
]
SPREAD = 24  # more libraries, evenly spaced by size

PT_LOAD, PT_DYNAMIC = 1, 2
DT = {
    "HASH": 4, "STRTAB": 5, "SYMTAB": 6, "RELA": 7, "RELASZ": 8,
    "STRSZ": 10, "PLTRELSZ": 2, "JMPREL": 23, "RELRSZ": 35, "RELR": 36,
    "GNU_HASH": 0x6FFFFEF5, "VERSYM": 0x6FFFFFF0, "VERDEF": 0x6FFFFFFC,
    "VERNEED": 0x6FFFFFFE,
}
# Words 2..15 of the RAW_TABLES header, in order.
RAW_FIELDS = ["GNU_HASH", "HASH", "SYMTAB", "STRTAB", "STRSZ", "VERSYM",
              "VERDEF", "VERNEED", "RELA", "RELASZ", "JMPREL", "PLTRELSZ",
              "RELR", "RELRSZ"]
SIZES = {"STRTAB": "STRSZ", "RELA": "RELASZ", "JMPREL": "PLTRELSZ",
         "RELR": "RELRSZ"}


def libraries():
    """Named libraries plus a spread of sizes, each file once."""
    found, by_name = {}, {}
    for name in sorted(os.listdir(LIBDIR)):
        if ".so" not in name:
            continue
        path = os.path.join(LIBDIR, name)
        real = os.path.realpath(path)
        try:
            size = os.path.getsize(real)
            with open(real, "rb") as f:
                magic = f.read(4)
        except OSError:
            continue
        if magic == b"\x7fELF" and 0 < size <= MAX_FILE and os.path.isfile(real):
            found.setdefault(real, (size, name))
            by_name[name] = real
    chosen = [by_name[n] for n in NAMED if n in by_name]
    ranked = sorted(found, key=lambda r: found[r][0])
    for i in range(SPREAD):
        real = ranked[i * (len(ranked) - 1) // max(SPREAD - 1, 1)] if ranked else None
        if real and real not in chosen:
            chosen.append(real)
    names = {real: name for name, real in by_name.items() if name in NAMED}
    return [(names.get(r, found[r][1]), r) for r in chosen]


class Elf:
    def __init__(self, data):
        self.data = data
        phoff, = struct.unpack_from("<Q", data, 32)
        phnum, = struct.unpack_from("<H", data, 56)
        shoff, = struct.unpack_from("<Q", data, 40)
        shnum, = struct.unpack_from("<H", data, 60)
        self.phdrs = [struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i)
                      for i in range(phnum)]
        self.shdrs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + 64 * i)
                      for i in range(shnum)] if shoff else []
        self.loads = [p for p in self.phdrs if p[0] == PT_LOAD]
        self.span = max(p[3] + p[6] for p in self.loads)
        dyn = [p for p in self.phdrs if p[0] == PT_DYNAMIC][0]
        self.dyn_bytes = data[dyn[2]:dyn[2] + dyn[5]]
        self.dyn = {}
        for i in range(0, len(self.dyn_bytes) - 15, 16):
            tag, val = struct.unpack_from("<qQ", self.dyn_bytes, i)
            if tag == 0:
                self.dyn_bytes = self.dyn_bytes[:i + 16]
                break
            self.dyn.setdefault(tag, val)
        first = self.loads[0]
        if first[2] != 0 or first[3] != 0:
            raise ValueError("first PT_LOAD is not at offset and address 0")
        self.first = data[:first[5]]

    def nsyms(self):
        for sh in self.shdrs:
            if sh[1] == 11:  # SHT_DYNSYM
                return sh[5] // 24
        return 0


def elf_hash(name):
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def align(buf, n):
    buf.extend(b"\0" * (-len(buf) % n))


def relr_encode(offsets):
    """The DT_RELR encoding of these (8-aligned) addresses."""
    offsets = sorted(o for o in set(offsets) if o % 8 == 0)
    out, i = [], 0
    while i < len(offsets):
        out.append(offsets[i])
        where = offsets[i] + 8
        i += 1
        while True:
            bits = 0
            while i < len(offsets) and offsets[i] - where < 63 * 8:
                bits |= 1 << ((offsets[i] - where) // 8)
                i += 1
            if not bits:
                break
            out.append(bits << 1 | 1)
            where += 63 * 8
    return struct.pack("<%dQ" % len(out), *out)


def raw_tables(elf, variant):
    """RAW_TABLES image: the first segment, header over the ELF header."""
    img = bytearray(elf.first)
    fields = {}
    for key in RAW_FIELDS:
        tag = DT[key]
        if key in SIZES.values() or tag not in elf.dyn:
            continue
        vaddr = elf.dyn[tag]
        size = elf.dyn.get(DT[SIZES[key]], 1) if key in SIZES else 1
        if 64 <= vaddr and vaddr + size <= len(img) and vaddr < 1 << 32:
            fields[key] = vaddr
            if key in SIZES:
                fields[SIZES[key]] = size
    if variant == "sysv" and "HASH" not in fields:
        nsyms = elf.nsyms()
        if not nsyms or "SYMTAB" not in fields or "STRTAB" not in fields:
            return None
        nbuckets = max(1, nsyms // 2 | 1)
        buckets, chains = [0] * nbuckets, [0] * nsyms
        for i in range(nsyms - 1, 0, -1):
            st_name, = struct.unpack_from("<I", img, fields["SYMTAB"] + 24 * i)
            start = fields["STRTAB"] + st_name
            name = bytes(img[start:img.index(b"\0", start)])
            b = elf_hash(name) % nbuckets
            chains[i], buckets[b] = buckets[b], i
        align(img, 8)
        fields["HASH"] = len(img)
        img += struct.pack("<II", nbuckets, nsyms)
        img += struct.pack("<%dI" % (nbuckets + nsyms), *buckets, *chains)
    if variant == "sysv":
        fields.pop("GNU_HASH", None)
        if "HASH" not in fields:
            return None
    if variant == "relr":
        rela = fields.get("RELA")
        if rela is None:
            return None
        offsets = []
        for i in range(fields["RELASZ"] // 24):
            r_offset, r_info = struct.unpack_from("<QQ", img, rela + 24 * i)
            if r_info & 0xFFFFFFFF == 8:  # R_X86_64_RELATIVE
                offsets.append(r_offset)
        if not offsets:
            return None
        align(img, 8)
        fields["RELR"] = len(img)
        table = relr_encode(offsets)
        fields["RELRSZ"] = len(table)
        img += table
    tail = max(0, min(elf.span, MAX_SPAN - (4 << 20)) - len(img))
    words = [0, tail] + [fields.get(k, 0) for k in RAW_FIELDS]
    img[:64] = struct.pack("<16I", *words)
    return bytes(img)


def raw_dynamic(elf):
    """RAW_DYNAMIC image: the first segment, then the dynamic section."""
    img = bytearray(elf.first)
    align(img, 8)
    dyn_off = len(img)
    img += elf.dyn_bytes
    tail = max(0, min(elf.span, MAX_SPAN - (4 << 20)) - len(img))
    img[:16] = struct.pack("<4I", 0, tail, dyn_off, len(elf.dyn_bytes))
    return bytes(img)


def cache_seeds(path="/etc/ld.so.cache"):
    data = open(path, "rb").read()
    yield "ld.so.cache", data
    for n in (20, 47, 48, 72, 48 + 24 * 10, len(data) // 2, len(data) - 1):
        if n < len(data):
            yield "truncated-%d" % n, data[:n]
    if not data.startswith(b"glibc-ld.so.cache1.1"):
        return
    nlibs, = struct.unpack_from("<I", data, 20)
    entries = []
    for i in range(min(nlibs, 40)):
        flags, key, value = struct.unpack_from("<iII", data, 48 + 24 * i)
        k = data[key:data.index(b"\0", key)]
        v = data[value:data.index(b"\0", value)]
        entries.append((flags, k, v))
    # The old format alone ("ld.so-1.7.0"), then with the new one inside.
    strings = bytearray()
    table = bytearray()
    for flags, k, v in entries:
        table += struct.pack("<iII", flags, len(strings), len(strings) + len(k) + 1)
        strings += k + b"\0" + v + b"\0"
    old = b"ld.so-1.7.0\0" + struct.pack("<I", len(entries)) + table
    yield "old-format", old + strings
    both = bytearray(old)
    align(both, 8)
    yield "old-with-new", bytes(both) + data
    yield "header-only", data[:48]


def main():
    target, corpus = sys.argv[1], sys.argv[2]
    os.makedirs(corpus, exist_ok=True)

    def put(name, data):
        if data is not None and len(data) <= MAX_FILE:
            with open(os.path.join(corpus, name), "wb") as f:
                f.write(data)

    if target == "ld_so_cache":
        for name, data in cache_seeds():
            put(name, data)
        return
    for name, path in libraries():
        data = open(path, "rb").read()
        put("elf-" + name, data)
        try:
            elf = Elf(data)
        except (ValueError, IndexError, struct.error):
            continue
        if target == "dynamic_section":
            put("raw-" + name, raw_dynamic(elf))
        elif target != "elf_header":
            variants = ["gnu", "sysv"] + (["relr"] if target == "relocation_tables" else [])
            for v in variants:
                put("raw-%s-%s" % (v, name), raw_tables(elf, v))


if __name__ == "__main__":
    main()
