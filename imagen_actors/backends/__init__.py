"""Image generation backends: a small protocol, a registry from ``type`` to an adapter."""
