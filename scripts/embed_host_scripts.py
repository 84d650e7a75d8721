"""Embed the host-side scripts (src/host/*.sh) into template.yaml's SSM documents.

The scripts live in their own files so shellcheck and the host tests run the exact text the
documents carry; this keeps the two equal. `--check` fails (exit 1) when they differ.

SSM expands `{{ name }}` anywhere in a document, so a script that contains `{{` is refused.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
BLOCK = re.compile(
    r"^(?P<indent> *)# BEGIN (?P<path>src/host/[a-z_]+\.sh)\n.*?^(?P=indent)# END (?P=path)\n",
    re.MULTILINE | re.DOTALL,
)


def render_block(indent: str, path: str) -> str:
    """The runCommand list for one script: one JSON-quoted (valid YAML) string per line."""
    text = (ROOT / path).read_text(encoding="utf-8")
    if "{{" in text:
        raise SystemExit(f"{path}: contains '{{{{', which SSM would interpolate")
    lines = [f"{indent}# BEGIN {path}", f"{indent}runCommand:"]
    lines += [f"{indent}  - {json.dumps(line)}" for line in text.splitlines()]
    lines.append(f"{indent}# END {path}")
    return "\n".join(lines) + "\n"


def embedded(template_text: str) -> str:
    """template_text with every marked runCommand block regenerated from its script."""
    return BLOCK.sub(lambda m: render_block(m["indent"], m["path"]), template_text)


def main(argv: list[str]) -> int:
    current = TEMPLATE.read_text(encoding="utf-8")
    wanted = embedded(current)
    if "--check" in argv:
        if wanted != current:
            print("template.yaml is out of date with src/host/*.sh: run `make document`")
            return 1
        return 0
    TEMPLATE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
