"""The subject room: the model under study (loading, hooks), the streaming capture and the records it makes, unit spaces
(neurons, dictionary features), the statistical analyses, probes, dictionaries and the logit lens; imports errors and
corpus."""
