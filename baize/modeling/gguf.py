"""llama.cpp's converter (HF folder -> GGUF), at a pinned version: the converter script and its `gguf-py` from the
llama.cpp sources that CONVERTER_PACKAGE's sdist vendors, fetched once from the package registry into baize's cache
(or a llama.cpp checkout named by BAIZE_LLAMA_CPP). `baize export` writes GGUF files with it, and SDF rounds whose
serve_command takes `{gguf}` serve each round's model from one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from baize.io.errors import HubError, UsageError
from baize.modeling.loading import cache_dir

logger = logging.getLogger("baize.modeling.gguf")
CONVERTER_PACKAGE = "llama-cpp-python==0.3.36"  # its sdist vendors llama.cpp (converter + gguf-py) at a known commit
CONVERTER_QUANTS = ("f16", "q8_0", "bf16", "f32")  # written by the converter itself, no compiled llama.cpp


def converter_dir() -> Path:
    """llama.cpp's converter and gguf-py at the pinned version: BAIZE_LLAMA_CPP, else baize's cache (fetched once)."""
    if os.environ.get("BAIZE_LLAMA_CPP"):
        folder = Path(os.environ["BAIZE_LLAMA_CPP"])
        if not (folder / "convert_hf_to_gguf.py").is_file():
            raise UsageError(
                f"BAIZE_LLAMA_CPP={folder}: no convert_hf_to_gguf.py there (point it at a llama.cpp tree)"
            )
        return folder
    target = cache_dir() / "llama.cpp" / CONVERTER_PACKAGE.replace("==", "-")
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    logger.info("Fetching llama.cpp's converter once: %s (sdist) -> %s", CONVERTER_PACKAGE, target)
    with tempfile.TemporaryDirectory(dir=target.parent.parent if target.parent.parent.exists() else None) as work:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "-q", CONVERTER_PACKAGE, "-d", work],
            capture_output=True, text=True,
        )  # fmt: skip
        archives = list(Path(work).glob("*.tar.gz"))
        if download.returncode != 0 or not archives:
            last = (download.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
            raise HubError(
                f"could not download {CONVERTER_PACKAGE} (llama.cpp's converter) from the package registry: {last}; "
                "or set BAIZE_LLAMA_CPP to a llama.cpp checkout"
            )
        staging = Path(work) / "converter"
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                parts = member.name.split("/")
                if (
                    len(parts) > 3
                    and parts[1:3] == ["vendor", "llama.cpp"]
                    and (parts[3] in ("convert_hf_to_gguf.py", "conversion", "gguf-py"))
                ):
                    member.name = "/".join(parts[3:])
                    archive.extract(member, staging, filter="data")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
    return target


def convert(hf_folder: Path, outfile: Path, quant: str) -> None:
    tools = converter_dir()
    outtype = quant if quant in CONVERTER_QUANTS else "f16"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tools / "gguf-py"),
                                                                     os.environ.get("PYTHONPATH")]))}  # fmt: skip
    command = [sys.executable, str(tools / "convert_hf_to_gguf.py"), str(hf_folder), "--outfile", str(outfile),
               "--outtype", outtype]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        unsupported = next((line for line in lines if "not supported" in line), None)
        if unsupported:
            architecture = json.loads((hf_folder / "config.json").read_text()).get("architectures")
            raise UsageError(f"llama.cpp's converter does not know this architecture ({architecture}): {unsupported}")
        raise HubError(f"llama.cpp's converter failed on {hf_folder}: {lines[-1] if lines else done.returncode}")
    if quant not in CONVERTER_QUANTS:
        quantized = outfile.with_suffix(".quant.gguf")
        subprocess.run([shutil.which("llama-quantize"), str(outfile), str(quantized), quant.upper()], check=True,
                       capture_output=True)  # fmt: skip
        quantized.replace(outfile)
