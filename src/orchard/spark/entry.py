"""The script spark-submit runs (an EMR step): the `orchard` command line, nothing else.

    spark-submit --master yarn --deploy-mode client spark_entry.py run --input ... --output ...

Under spark-submit, `orchard run` takes the master from spark-submit, so the step runs the very
same code path as `orchard run` on a laptop. `orchard aws push` uploads this file to the bucket.
"""
import os
import sys


def _main() -> int:
    # Run as a script, this file's folder (the orchard package itself, in a checkout) would come
    # first on sys.path and its modules could shadow others: import orchard as a package instead.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    from orchard.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
