"""Logs, metrics, health endpoints and systemd notifications for the worker."""
