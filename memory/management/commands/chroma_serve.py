"""`python manage.py chroma_serve`: run the Chroma server on the host and port of CHROMA_URL.

The Procfile's `chroma` process. It execs Chroma's own `chroma run` (shipped with
chromadb), so the server is exactly upstream's; this only keeps its address in one
setting that every process reads.
"""

from __future__ import annotations

import os
import shutil
import sys
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run `chroma run` on the host and port of CHROMA_URL, storing data under --path."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--path", default=str(settings.VAR_DIR / "chroma"), help="Where Chroma keeps its data.")

    def handle(self, *args, **options) -> None:
        url = urlparse(settings.CHROMA_URL)
        # The venv's bin/ may not be on PATH (e.g. `.venv/bin/python manage.py ...`).
        chroma = shutil.which("chroma") or shutil.which("chroma", path=os.path.dirname(sys.executable))
        if chroma is None:
            raise CommandError("the `chroma` command is not installed (pip install chromadb)")
        os.makedirs(options["path"], exist_ok=True)
        argv = [
            chroma,
            "run",
            "--path",
            options["path"],
            "--host",
            url.hostname or "127.0.0.1",
            "--port",
            str(url.port or 8000),
        ]
        self.stdout.write(" ".join(argv))
        self.stdout.flush()
        os.execv(chroma, argv)
