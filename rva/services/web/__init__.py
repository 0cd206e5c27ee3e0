"""rva web (rva-web.service): the live page, the annotated MJPEG stream, /metrics, /healthz and
a small JSON API, with its own HTTP server, authentication and static files."""

from rva.services.web.app import serve

__all__ = ["serve"]
