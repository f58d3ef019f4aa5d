"""The ``autointerp`` command: a thin layer over ``autointerp.pipeline`` and ``autointerp.db``.

    autointerp run --layer 13                  # capture, explain, simulate, score, store, summarise
    autointerp leaderboard --layer 13          # best explanation per unit
    autointerp leaderboard --by explainer      # one row per explainer: units, mean, median, 95% CI
    autointerp show 13/42                      # one unit's card
    autointerp report --out review/            # a static review site; `autointerp serve` for it live

Bad input prints one line saying what to do and exits with status 2; ``--debug`` shows the traceback instead.
"""

# Each module registers its commands on ``app``; `autointerp --help` lists them in this order.
from autointerp.cli import run  # noqa: F401, I001
from autointerp.cli import analyses  # noqa: F401, I001
from autointerp.cli import dictionaries  # noqa: F401, I001
from autointerp.cli import results  # noqa: F401, I001
from autointerp.cli import review  # noqa: F401, I001
from autointerp.cli import sweeps  # noqa: F401, I001
from autointerp.cli import database  # noqa: F401, I001
from autointerp.cli.app import app, main

__all__ = ["app", "main"]
