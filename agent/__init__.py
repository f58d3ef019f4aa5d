"""The agent room: the Explainer interface, the baseline explainer, and the LLM agent (langgraph) with its tools;
imports errors, corpus, llm, prompts and subject."""
