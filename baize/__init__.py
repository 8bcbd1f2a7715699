"""baize: the Baize chat-model pipeline (arXiv 2304.01196) on the Hugging Face stack."""

__version__ = "0.1.0"
