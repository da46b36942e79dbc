"""Fetches CLIP's byte-pair vocabulary (bpe_simple_vocab_16e6.txt.gz) from the open_clip_torch wheel on PyPI.

Only the wheel is downloaded (no dependencies, nothing installed) and only the one file is kept.

    python fetch_bpe.py <destination .txt.gz>
"""

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "open_clip_torch==3.3.0"
MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"


def main() -> None:
    destination = Path(sys.argv[1])
    if destination.exists():
        return
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", WHEEL, "-d", scratch],
            check=True,
        )
        wheel = next(Path(scratch).glob("open_clip_torch-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    partial.write_bytes(data)
    partial.rename(destination)


if __name__ == "__main__":
    main()
