"""The six actors of the worker, plus the supervisor that restarts them."""
