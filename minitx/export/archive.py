"""An export as bytes to download: the Hugging Face folder as a zip archive, or the GGUF file itself."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from .cli import export


def export_archive(run_path: str | Path, to: str, kind: str = "f32") -> tuple[bytes, str]:
    """(the bytes, a file name): <run>-hf.zip holding <run>/config.json ..., or <run>-<kind>.gguf."""
    run_path = Path(run_path)
    with tempfile.TemporaryDirectory(prefix="minitx-export-") as folder:
        target = Path(folder) / (run_path.name if to == "hf" else f"{run_path.name}-{kind}.gguf")
        export(run_path, to, target, kind)
        if to == "gguf":
            return target.read_bytes(), target.name
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(target.iterdir()):
                archive.write(file, f"{run_path.name}/{file.name}")
        return buffer.getvalue(), f"{run_path.name}-hf.zip"
