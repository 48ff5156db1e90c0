#!/usr/bin/env python3
"""Vendor ONNX's proto2 schema from the onnx wheel as proto3, the way onnx's own
gen_proto.py (convert_to_proto3) does: syntax line -> proto3, `optional ` labels
dropped, `[default = ...]` options dropped, imports renamed to `.proto3`.
One difference: imports are made folder-local ("onnx/onnx-ml.proto" ->
"onnx-ml.proto3") so frontends/proto/ is the only include path.

usage: convert_proto3.py WHEEL OUT_DIR
"""
import re
import sys
import zipfile

SYNTAX = re.compile(r'(\s*)syntax\s*=\s*"proto2"\s*;\s*$')
OPTIONAL = re.compile(r"(\s*)optional\s(.*)$")
IMPORT = re.compile(r'(\s*)import\s*"(?:[^"]*/)?([^"/]*)\.proto";\s*$')
DEFAULT = re.compile(r"\s*\[\s*default\s*=\s*[^\]]*\]")


def convert(text):
    out = []
    for line in text.splitlines():
        m = SYNTAX.match(line)
        if m:
            out.append(m.group(1) + 'syntax = "proto3";')
            continue
        m = OPTIONAL.match(line)
        if m:
            line = m.group(1) + m.group(2)
        line = DEFAULT.sub("", line)
        m = IMPORT.match(line)
        if m:
            line = m.group(1) + f'import "{m.group(2)}.proto3";'
        out.append(line)
    return "\n".join(out) + "\n"


def main():
    wheel, out_dir = sys.argv[1], sys.argv[2]
    with zipfile.ZipFile(wheel) as z:
        for stem in ("onnx-ml", "onnx-data"):
            text = z.read(f"onnx/{stem}.proto").decode("utf-8")
            with open(f"{out_dir}/{stem}.proto3", "w", encoding="utf-8", newline="\n") as f:
                f.write(convert(text))
            print(f"wrote {out_dir}/{stem}.proto3")


if __name__ == "__main__":
    main()
