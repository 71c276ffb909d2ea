"""Agents apart from the RQ runtime: the registry (code, settings file, run-time rows),
the kinds (Python, HTTP, LLM, the planner), circuit breakers, concurrency limits, rate
limits (requests and tokens per minute), and the /agents API. Imports nothing of jobs or
workers: plan validation needs the registry, the registry needs no job."""
