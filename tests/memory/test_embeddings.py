"""Our fast embedding path must give Chroma's own vectors."""

from __future__ import annotations

import time

import numpy as np

from core.errors import http_status_of
from memory.chroma import chroma_default_embedding_function
from memory.embeddings import embed

TEXTS = [
    "hi",
    "The customer asked for a refund because the parcel arrived damaged.",
    "Invoice INV-2024-00917 was paid by bank transfer on 3 March.",
    "Quarterly revenue grew 12% while operating costs stayed flat. " * 20,  # over 256 word pieces
    "Ünïcödé, emoji 🙂 and punctuation!?",
]


def test_fast_embeddings_equal_chromas_default_embedding_function():
    ours = embed(TEXTS)
    chromas = np.array(chroma_default_embedding_function()(TEXTS))
    cosine = (ours * chromas).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(chromas, axis=1))
    assert ours.shape == (len(TEXTS), 384)
    assert np.all(cosine > 0.99999), cosine


def test_a_short_query_embeds_much_faster_than_with_chromas_padding():
    query = ["what did the customer say about the damaged parcel?"]
    embed(query)
    chroma = chroma_default_embedding_function()
    chroma(query)

    def best_of(fn, n=5):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn(query)
            times.append(time.perf_counter() - start)
        return min(times)

    ours, theirs = best_of(embed), best_of(chroma)
    print(f"query embedding: ours {ours * 1000:.1f} ms, chroma's {theirs * 1000:.1f} ms")
    assert ours * 3 < theirs


def test_an_openai_compatible_endpoint_embeds_when_configured(settings):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import pytest

    from core.errors import ApplicationError

    seen = []

    class Embeddings(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body))
            if body["input"] == ["fail"]:
                self.send_response(500)
                self.end_headers()
                return
            # Answered out of order on purpose: clients must sort by "index".
            data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(body["input"])][::-1]
            payload = json.dumps({"data": data, "model": body["model"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Embeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.AGENTBUS_EMBEDDINGS_URL = f"http://127.0.0.1:{server.server_port}/v1"
        settings.AGENTBUS_EMBEDDINGS_MODEL = "nomic-embed-text"
        settings.AGENTBUS_EMBEDDINGS_API_KEY = "sk-test"

        vectors = embed(["ab", "abcd"])

        assert seen[0] == ("/v1/embeddings", "Bearer sk-test", {"model": "nomic-embed-text", "input": ["ab", "abcd"]})
        expected = np.array([[2.0, 1.0, 0.0], [4.0, 1.0, 0.0]])
        assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True))  # unit, in order
        with pytest.raises(ApplicationError) as failure:
            embed(["fail"])
        assert http_status_of(failure.value) == 503
    finally:
        server.shutdown()
