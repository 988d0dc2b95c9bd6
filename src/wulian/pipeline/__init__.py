"""The ingest pipeline: authenticate → decode → validate → store → notify, for every protocol."""

from wulian.pipeline.directory import DeviceDirectory
from wulian.pipeline.ingest import IngestLimits, Pipeline

__all__ = ["DeviceDirectory", "IngestLimits", "Pipeline"]
