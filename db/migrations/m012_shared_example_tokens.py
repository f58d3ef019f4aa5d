"""Migration ``m012_shared_example_tokens``, registered in order by ``autointerp.db.migrations``, whose rules hold:
never edited once released; a change is a new migration."""

from __future__ import annotations

from sqlite_utils import Database


def m012_shared_example_tokens(db: Database) -> None:
    """No schema change: from here on, an example in ``judgements.examples`` whose window already appeared earlier
    in the same judgement (fuzzing shows each window twice) is stored without its ``tokens``, and readers take them
    from that earlier example (``autointerp.db.judgements``). Recorded so that an older autointerp, which would show
    those examples without text, refuses a file written this way."""
