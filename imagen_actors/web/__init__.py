"""The operator's dashboard (``imagen-actors serve``): Starlette on Hypercorn's Trio worker."""
