"""Malformed weights files: each must end `distill inspect` or `distill embed`
with exit status 2 and one line naming the file and the problem, never a
crash (also under the sanitizers, when run against that build).

usage: malformed_weights.py DISTILL_BINARY GOOD_WEIGHTS GOOD_IO WORK_DIR
"""
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import st_io  # noqa: E402


def raw_file(header_obj, data, hlen=None, header_text=None):
    text = header_text if header_text is not None else json.dumps(header_obj).encode()
    return struct.pack("<Q", len(text) if hlen is None else hlen) + text + data


def header_of(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:], blob


def cases(good):
    hdr, data, blob = header_of(good)
    names = [k for k in hdr if k != "__metadata__"]
    first = names[0]

    def edit(fn):
        h = json.loads(json.dumps(hdr))
        fn(h)
        return raw_file(h, data)

    def swap_first_two_offsets(h):
        a, b = sorted(names, key=lambda k: h[k]["data_offsets"][0])[:2]
        h[b]["data_offsets"] = [h[a]["data_offsets"][0], h[a]["data_offsets"][0] + (h[b]["data_offsets"][1] - h[b]["data_offsets"][0])]

    tensors, _ = st_io.read(good)
    missing = dict(tensors)
    del missing["blocks.1.attn.qkv.weight"]
    unknown = dict(tensors)
    unknown["head.weight"] = ("F32", [2], b"\0" * 8)
    bad_shape = dict(tensors)
    dt, shape, raw = bad_shape["blocks.0.attn.qkv.weight"]
    bad_shape["blocks.0.attn.qkv.weight"] = (dt, [shape[0] // 2, shape[1] * 2], raw)
    int_weights = dict(tensors)
    dt, shape, raw = int_weights["norm.weight"]
    int_weights["norm.weight"] = ("I32", shape, raw)
    return [
        # (name, bytes or tensors dict, command, expected words in the message)
        ("empty file", b"", "inspect", "too short"),
        ("four bytes", b"\x01\x02\x03\x04", "inspect", "too short"),
        ("truncated", blob[: len(blob) // 2], "inspect", "past the end"),
        ("header length past the end", struct.pack("<Q", len(blob) * 4) + blob[8:], "inspect", "header length"),
        ("header length huge", struct.pack("<Q", 2**63) + blob[8:], "inspect", "header length"),
        ("invalid JSON", raw_file(None, data, header_text=b'{"cls_token": {"dtype": "F32", "shape": [1, 1, 128],'), "inspect", "invalid header JSON"),
        ("header not an object", raw_file(None, b"", header_text=b"[1, 2, 3]"), "inspect", "invalid header JSON"),
        ("offsets out of range", edit(lambda h: h[first].update(data_offsets=[len(data) - 4, len(data) + 4 * 127])), "inspect", "data_offsets"),
        ("offsets reversed", edit(lambda h: h[first].update(data_offsets=[8, 4])), "inspect", "end before"),
        ("offsets overlapping", edit(swap_first_two_offsets), "inspect", "overlap"),
        ("unknown dtype", edit(lambda h: h[first].update(dtype="F31")), "inspect", "unknown dtype"),
        ("shape and byte count disagree", edit(lambda h: h[first].update(shape=[1, 1, 129])), "inspect", "bytes"),
        ("negative dimension", raw_file(None, data, header_text=json.dumps(hdr).replace('"shape": [1, 1, 128]', '"shape": [1, -1, 128]', 1).encode()), "inspect", "invalid header JSON"),
        ("duplicate tensor name", raw_file(None, data, header_text=(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}')), "inspect", "twice"),
        ("missing tensor", missing, "embed", "missing"),
        ("unknown tensor name", unknown, "embed", "unknown tensor 'head.weight'"),
        ("wrong shape for a known tensor", bad_shape, "embed", "blocks.0.attn.qkv.weight"),
        ("integer dtype for a weight", int_weights, "embed", "not a floating-point type"),
        ("a directory", None, "inspect", "not a regular file"),
        ("no such file", "missing", "inspect", "cannot open"),
    ]


def main():
    binary, good, good_io, work = sys.argv[1:5]
    os.makedirs(work, exist_ok=True)
    failures = 0
    all_cases = cases(good)
    for i, (name, content, command, expect) in enumerate(all_cases):
        path = os.path.join(work, f"bad{i:02d}.safetensors")
        if content is None:
            path = work
        elif content == "missing":
            path = os.path.join(work, "does-not-exist.safetensors")
        elif isinstance(content, dict):
            st_io.write(path, content)
        else:
            with open(path, "wb") as f:
                f.write(content)
        if command == "inspect":
            argv = [binary, "inspect", path]
        else:
            argv = [binary, "embed", "--weights", path, "--input", good_io, "--tensor", "s56.input",
                    "--out", os.path.join(work, "out.safetensors")]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        ok = (p.returncode == 2 and len(lines) == 1 and expect in lines[0] and path in lines[0])
        status = "ok  " if ok else "FAIL"
        print(f"{status} {name}: exit {p.returncode}, stderr: {' | '.join(lines)[:300]}")
        failures += not ok
    print(f"malformed_weights: {len(all_cases)} checks, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
