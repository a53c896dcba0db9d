"""The scoring contract of an exported model, shared by the pipeline, the registry and the gateway."""
