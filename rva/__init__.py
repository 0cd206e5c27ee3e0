"""RVA — Realtime Video Analytics: count people on an edge device with Redis streams."""

__version__ = "0.1.0"
