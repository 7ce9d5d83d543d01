#!/usr/bin/env python3
"""Write the seed corpora of fuzz_store_manifest and fuzz_store_validate (manifest format 2).

   tests/fuzz/gen_store_corpus.py [SOURCE_DIR]

The layout is the one drawn at the top of store/codec.c; this file carries its own small msgpack
writer (shortest forms, as the store writes them) so it needs nothing beyond python3. Seeds named
bad_* are manifests the store must refuse; hostile_* are what a hostile peer would serve (the
validate corpus: a u32 LE manifest length, the manifest, then NUL-separated symlink targets).
Rerun after a format change and commit the result.
"""
import os
import struct
import sys


def pk(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if v < 0x80:
            return bytes([v])
        if v < 0x100:
            return b"\xcc" + bytes([v])
        if v < 0x10000:
            return b"\xcd" + struct.pack(">H", v)
        if v < 0x100000000:
            return b"\xce" + struct.pack(">I", v)
        return b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, str):
        v = v.encode("utf-8", "surrogateescape")
        n = len(v)
        if n < 32:
            return bytes([0xA0 | n]) + v
        if n < 0x100:
            return b"\xd9" + bytes([n]) + v
        return b"\xda" + struct.pack(">H", n) + v
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        n = len(v)
        head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
        return head + b"".join(pk(x) for x in v)
    raise TypeError(v)


def blob(i):
    return bytes([i]) * 32


def manifest(service="web", runtime="exec", version="1.0", command="bin/web", unit=None,
             image=None, archive=None, health=None, endpoint=None, recovery=(0, True),
             git=(None, None, None, None), files=(), fmt=2, fields=None):
    h = health or [None, None, None, 2000, 1000, 3, 60000]
    files = sorted(files, key=lambda f: f[0].encode("utf-8", "surrogateescape"))
    body = [fmt, service, runtime, version, command, unit, image, archive, h, endpoint,
            list(recovery), *git, [list(f) for f in files]]
    if fields is not None:
        body = body[:fields]
    return pk(body)


def reg(path, size=1, b=1, mode=0o644):
    return (path, mode, size, blob(b))


def link(path, target):
    return (path, 0o120000, len(target.encode("utf-8", "surrogateescape")), blob(9))


def validate_seed(files, targets, **kw):
    m = manifest(files=sorted(files, key=lambda f: f[0].encode("utf-8", "surrogateescape")), **kw)
    tail = b"\0".join(t.encode("utf-8", "surrogateescape") for t in targets)
    return struct.pack("<I", len(m)) + m + tail


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    mdir = os.path.join(src, "tests/fuzz/corpus/store_manifest")
    vdir = os.path.join(src, "tests/fuzz/corpus/store_validate")
    os.makedirs(mdir, exist_ok=True)
    os.makedirs(vdir, exist_ok=True)
    base = [reg("bin/web", 100, 1, 0o755), reg("release.ini", 60, 2)]

    seeds = {
        "minimal": manifest(command="sleep 60", version=None, files=()),
        "exec_full": manifest(health=["http://127.0.0.1:8080/healthz", None, None, 500, 200, 2,
                                      30000],
                              git=("0123456789abcdef0123456789abcdef01234567", "v1.0",
                                   "A U Thor <a@example.org>", "release\n\nbody\twith tab"),
                              files=base + [link("current", "bin/web")]),
        "systemd": manifest(runtime="systemd", command=None, unit="web.service",
                            files=[reg("release.ini", 40, 2), reg("web.service", 90, 3)]),
        "container": manifest(runtime="container", command=None, image="localhost/web:1",
                              archive="image.tar",
                              health=[None, "127.0.0.1:8080", None, 2000, 1000, 3, 60000],
                              files=[reg("image.tar", 5000, 4), reg("release.ini", 50, 2)]),
        "endpoint_v6": manifest(endpoint=[8443, "fd00::5", 100, "tcp", 10000], files=base),
        "endpoint_full": manifest(endpoint=[8080, "10.0.0.5", 256, "http", 600000],
                                  recovery=(100, False), files=base),
        "endpoint_minimal": manifest(endpoint=[443, None, 0, "tcp", 0], files=base),
        "truncated": manifest(files=base)[:-7],
        "format1": b"\x9f\x01" + manifest(files=base)[2:],
        "format3": manifest(fmt=3, files=base),
        "bad_count": manifest(files=base, fields=15),
        "bad_abs_path": manifest(files=[reg("/etc/shadow"), reg("release.ini")]),
        "bad_dotdot_path": manifest(files=[reg("../../../etc/cron.d/x"), reg("release.ini")]),
        "bad_empty_component": manifest(files=[reg("a//b"), reg("release.ini")]),
        "bad_newline_name": manifest(files=[reg("a\nb"), reg("release.ini")]),
        "bad_escape_name": manifest(files=[reg("\x1b[2Jx"), reg("release.ini")]),
        "bad_c1_name": manifest(files=[reg("release.ini"), reg("x\u009by")]),
        "bad_latin1_name": manifest(files=[reg("release.ini"), reg("caf\udce9")]),
        "bad_duplicate": manifest(files=[reg("a"), reg("a")]),
        "bad_file_as_dir": manifest(files=[link("etc", "x"), reg("etc/shadow"), reg("x/y")]),
        "bad_service": manifest(service="..", files=base),
        "bad_runtime": manifest(runtime="vm", files=base),
        "bad_endpoint_port0": manifest(endpoint=[0, None, 100, "tcp", 10000], files=base),
        "bad_endpoint_weight": manifest(endpoint=[80, None, 257, "tcp", 10000], files=base),
        "bad_endpoint_proto": manifest(endpoint=[80, None, 100, "udp", 10000], files=base),
        "bad_endpoint_addr": manifest(endpoint=[80, "example.org", 100, "tcp", 10000],
                                      files=base),
        "bad_endpoint_drain": manifest(endpoint=[80, None, 100, "tcp", 600001], files=base),
        "bad_recovery": manifest(recovery=(101, True), files=base),
        "bad_version_escape": manifest(version="1.0\x1b]0;pwned\x07", files=base),
    }
    for name, data in seeds.items():
        with open(os.path.join(mdir, name), "wb") as f:
            f.write(data)

    vseeds = {
        "good_links": validate_seed(base + [link("current", "bin/web"), link("bin/up", "../release.ini")],
                                    ["../release.ini", "bin/web"]),
        "hostile_etc_shadow": validate_seed(base + [link("shadow", "/etc/shadow")],
                                            ["/etc/shadow"]),
        "hostile_dotdot": validate_seed(base + [link("up", "../../..")], ["../../.."]),
        "hostile_deep_dotdot": validate_seed(base + [link("a/b/c", "../../../x")],
                                             ["../../../x"]),
        "hostile_through_link": validate_seed(base + [link("s", "."), link("x", "s/..")],
                                              [".", "s/.."]),
        "hostile_link_to_abs": validate_seed(base + [link("a0", "abs2/z"), link("abs2", "/tmp")],
                                             ["abs2/z", "/tmp"]),
        "hostile_loop": validate_seed(base + [link("loop1", "loop2"), link("loop2", "loop1")],
                                      ["loop2", "loop1"]),
        "hostile_target_newline": validate_seed(base + [link("l", "bin/w\neb")], ["bin/w\neb"]),
        "hostile_target_escape": validate_seed(base + [link("l", "\x1b[31mred")], ["\x1b[31mred"]),
        "hostile_target_size_lies": validate_seed(base + [("l", 0o120000, 3, blob(9))],
                                                  ["bin/web"]),
        "hostile_link_then_file": validate_seed([reg("release.ini"), link("etc", "/etc"),
                                                 reg("etc/passwd")], ["/etc"]),
        "hostile_abs_path": struct.pack("<I", len(seeds["bad_abs_path"])) + seeds["bad_abs_path"],
        "hostile_newline_name": struct.pack("<I", len(seeds["bad_newline_name"]))
        + seeds["bad_newline_name"],
        "hostile_escape_name": struct.pack("<I", len(seeds["bad_escape_name"]))
        + seeds["bad_escape_name"],
    }
    for name, data in vseeds.items():
        with open(os.path.join(vdir, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
