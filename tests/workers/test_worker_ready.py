"""A worker that RQ lists as ready is ready: the entry point is loaded before the first task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_loading_the_worker_class_loads_the_task_entry_point_before_any_task_arrives():
    """RQ imports ``workers.tasks.task_run`` by name when the first message comes; with the
    openai client and the agents' kinds behind it that took 0.6 s on a quiet machine, and
    16 fresh workers sharing two cores took their first tasks 2 to 10 s late. The worker
    class (what `manage.py rqworker` loads at start, settings.RQ["WORKER_CLASS"]) must
    bring it in, in a fresh interpreter as a new worker process has."""
    code = (
        "import sys, django; django.setup()\n"
        "from django.conf import settings\n"
        "from django.utils.module_loading import import_string\n"
        "assert 'workers.tasks' not in sys.modules, 'set-up alone already loads it: this test proves nothing'\n"
        "import_string(settings.RQ['WORKER_CLASS'])\n"
        "print('loaded' if 'workers.tasks' in sys.modules else 'missing')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "agentbus_site.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "loaded"
