"""Prefect flows that wire the stages in ``tasks`` together; no business logic lives here."""

import os

# No network here or in many deployments: keep Prefect's and GX's telemetry off unless asked for.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
