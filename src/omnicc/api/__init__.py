"""The HTTP edge of OmniCC: FastAPI application, problem details, health and metrics."""
