"""Text to vectors, once per process: Chroma's default model run the fast way, or an
OpenAI-compatible ``/embeddings`` endpoint when AGENTBUS_EMBEDDINGS_URL is set.

Why not Chroma's own embedding function: it pads every input to 256 word pieces, so one
short query costs ~130 ms on a laptop CPU. The same ONNX model, run with padding only to
the longest input of the batch, gives identical vectors (the attention mask zeroes the
padding out of the mean pooling) in ~2 ms. tests/memory/test_embeddings.py holds us to
cosine 1.0 against Chroma's DefaultEmbeddingFunction.
"""

from __future__ import annotations

import json
import threading
import urllib.request

import numpy as np
from django.conf import settings

from core.errors import Unavailable

MAX_WORD_PIECES = 256  # what sentence-transformers and Chroma truncate this model at
BATCH_SIZE = 32

_lock = threading.Lock()
_model: MiniLM | None = None


class MiniLM:
    """all-MiniLM-L6-v2 (ONNX, 384 dimensions) from Chroma's model cache."""

    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        from memory.chroma import chroma_default_model_dir

        folder = chroma_default_model_dir()
        if not (folder / "model.onnx").exists():
            raise RuntimeError(
                f"the embedding model is missing from {folder}; run ../shared/bin/seed-chroma-model "
                "(offline) or let Chroma download it once"
            )
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_WORD_PIECES)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread, no spin-waiting: a web process embeds for many requests at once and
        # shares the CPU with others; onnxruntime's default (every core, spinning) was 2-3x
        # slower per query on a busy 2-core machine.
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        # Similar lengths batch together so little padding is computed.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            chunk = order[start : start + BATCH_SIZE]
            encoded = self.tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            hidden = self.session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[chunk] = pooled
        return _normalize(out)


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1e-12
    return (vectors / norms).astype(np.float32)


def _remote_embed(texts: list[str]) -> np.ndarray:
    """An OpenAI-compatible embeddings endpoint (OpenAI, Ollama, vLLM, llama.cpp server)."""
    body = json.dumps({"model": settings.AGENTBUS_EMBEDDINGS_MODEL, "input": texts}).encode()
    request = urllib.request.Request(
        settings.AGENTBUS_EMBEDDINGS_URL.rstrip("/") + "/embeddings",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if settings.AGENTBUS_EMBEDDINGS_API_KEY:
        request.add_header("Authorization", f"Bearer {settings.AGENTBUS_EMBEDDINGS_API_KEY}")
    try:
        with urllib.request.urlopen(request, timeout=settings.AGENTBUS_EMBEDDINGS_TIMEOUT) as response:
            data = json.loads(response.read())["data"]
        vectors = [row["embedding"] for row in sorted(data, key=lambda row: row.get("index", 0))]
        if len(vectors) != len(texts):
            raise ValueError(f"asked for {len(texts)} embeddings, got {len(vectors)}")
        return _normalize(np.array(vectors, dtype=np.float32))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Unavailable(f"The embeddings endpoint failed: {exc}", code="embeddings_unavailable") from exc


def embedding_model_name() -> str:
    return settings.AGENTBUS_EMBEDDINGS_MODEL if settings.AGENTBUS_EMBEDDINGS_URL else MiniLM.name


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length vectors for ``texts`` (rows in the same order)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    if settings.AGENTBUS_EMBEDDINGS_URL:
        return _remote_embed(texts)
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = MiniLM()
    return _model.embed(texts)
