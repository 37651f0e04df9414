"""The HTTP API (DESIGN §3.13, §4): god, brand and client administrators, each seeing and
changing only what its level, its scope and its privileges allow, every change audited.

FastAPI: it serves its OpenAPI description, validates with pydantic (the provisioning
models are pydantic already), runs on asyncio as the rest of the service does, and is
well kept. :mod:`~callcontrol.api.access` decides, :mod:`~callcontrol.api.accounts`
authenticates, :mod:`~callcontrol.api.app` answers, :mod:`~callcontrol.api.serve` listens.
"""
