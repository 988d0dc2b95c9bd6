"""The REST API under /api/v1 (admin) and HTTP ingest for devices."""

from wulian.api.app import create_app

__all__ = ["create_app"]
