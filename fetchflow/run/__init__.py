"""One run, pure of Prefect: rendering and executing a step, cost estimates, reuse of
earlier outputs (resume, cache), the preflight of settings and store, and the run report.
"""
