"""The only code that writes to the MLflow model registry: versions, aliases, the promotion gate, audit, rollback."""
