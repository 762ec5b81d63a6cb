"""The only part of fetchflow that imports Prefect: the flow, the step scheduler,
approval, artifacts in the UI, deployments (serve) and the local server.
"""
