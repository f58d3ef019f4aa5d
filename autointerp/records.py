"""Deprecated: the records moved to ``autointerp.subject.records`` (the room that makes them); this name works until
0.3, with a warning."""

import warnings

from autointerp.subject.records import (  # noqa: F401
    SPLITS,
    Source,
    Split,
    UnitId,
    UnitRecord,
    UnitStats,
    Window,
    deal_splits,
)

warnings.warn("autointerp.records is deprecated; import from autointerp.subject.records", DeprecationWarning,
              stacklevel=2)
