"""autointerp: explain and score every neuron (or SAE feature) of a language model layer.

Data flows one way: corpus -> subject (capture, analyses) -> records -> agent (explainer) -> scoring (simulator,
score) -> db -> leaderboard / report. ``autointerp.pipeline`` is the only module that imports every stage.
"""

__version__ = "0.1.0"
