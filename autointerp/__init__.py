"""autointerp: explain and score every neuron (or SAE feature) of a language model layer.

This folder is the front door only: ``cli`` (the command), ``pipeline`` (one module per command, the only code that
imports every room), ``config`` and ``errors``. The rooms are top-level folders imported as ``autointerp.<room>``;
data flows one way: corpus -> subject (capture, records, analyses) -> agent (explainer) -> scoring (simulator,
score) -> db -> leaderboard / report / sweep (``tests/test_imports.py`` holds the order).
"""

__version__ = "0.1.0"
