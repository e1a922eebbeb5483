"""The Python that Spark starts its Python workers with (``PYSPARK_PYTHON``), as the console
script ``marketpipe-spark-python``: this interpreter, without the ``pyspark.zip`` and py4j zip
that Spark puts first on the workers' ``PYTHONPATH``.

Python cannot cache what it compiles from a zip, so every new worker process (the source's
reader, the data source planner, the daemon that forks the others) compiled pyspark from source
again: about 11 s of CPU in a restarted features job on a 2-core machine, measured with py-spy.
The installed pyspark is the same version, with its bytecode cached. Kept free of imports
beyond the standard library: it runs once per worker process start.
"""

from __future__ import annotations

import os
import sys

_SPARK_ZIPS = ("pyspark.zip",)


def _is_spark_zip(path: str) -> bool:
    name = os.path.basename(path)
    return name in _SPARK_ZIPS or (name.startswith("py4j-") and name.endswith("-src.zip"))


def worker_env(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with Spark's zips taken off ``PYTHONPATH`` (the rest kept, in order)."""
    paths = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**environ, "PYTHONPATH": os.pathsep.join(p for p in paths if not _is_spark_zip(p))}


def worker_python() -> str:
    """The Python to start Spark's Python workers with: this console script beside this
    interpreter when installed, else this interpreter."""
    script = os.path.join(os.path.dirname(sys.executable), "marketpipe-spark-python")
    return script if os.access(script, os.X_OK) else sys.executable


def main() -> None:
    os.execve(sys.executable, [sys.executable, *sys.argv[1:]], worker_env(dict(os.environ)))


if __name__ == "__main__":
    main()
