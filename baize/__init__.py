"""baize: the Baize chat-model pipeline (arXiv 2304.01196) on the Hugging Face stack."""

import logging
from pathlib import Path

__version__ = "0.1.0"

# The one Baize chat template, for training and inference (see the file's header).
BAIZE_TEMPLATE = str(Path(__file__).parent / "templates" / "baize.jinja")

# bitsandbytes warns at import on AVX512-BF16 CPUs that its optional Hub-downloaded `kernels` gemm is
# missing; the built-in CPU path works (and is what an offline machine can have), so keep --help clean.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
