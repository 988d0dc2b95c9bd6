"""wulian (物联): an open IoT infrastructure platform."""

from wulian.domain.thingmodel import ThingModel, ThingModelError, parse_thing_model

__version__ = "0.1.0"

__all__ = ["ThingModel", "ThingModelError", "__version__", "parse_thing_model"]
