#!/usr/bin/env python
"""A Celery worker (solo pool) that counts the SQL statements it sends, for bench/crypto_settlement.py.

    python bench/crypto_worker.py COUNT_FILE <celery arguments after "celery">

The count is written to COUNT_FILE (JSON) every half second and at exit, so a worker that the
crash test kills hard (os._exit) loses at most the last half second of its count. Everything else
is the stock worker of ``config.celery.worker_argv``.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    count_file = Path(sys.argv[1])
    celery_args = sys.argv[2:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    counts = {"statements": 0}

    def counter(execute, sql, params, many, context):
        counts["statements"] += len(params) if many and params is not None else 1
        return execute(sql, params, many, context)

    connection.execute_wrappers.append(counter)  # the solo pool runs every task on this thread

    def dump() -> None:
        temp = count_file.with_suffix(".tmp")
        temp.write_text(json.dumps(counts))
        temp.replace(count_file)

    def every_half_second() -> None:
        while True:
            threading.Event().wait(0.5)
            dump()

    threading.Thread(target=every_half_second, daemon=True).start()
    atexit.register(dump)
    profile_dir = os.environ.get("CLEARHOUSE_BENCH_PROFILE")  # where the CPU goes: cProfile per worker
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        atexit.register(lambda: profiler.dump_stats(str(Path(profile_dir) / f"{count_file.stem}.prof")))
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *celery_args]
    celery_main()


if __name__ == "__main__":
    main()
