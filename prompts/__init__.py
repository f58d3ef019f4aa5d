"""The prompts room: jinja2 templates and few-shot examples for the explainer and the simulator, rendered with
StrictUndefined; imports nothing else of autointerp."""
