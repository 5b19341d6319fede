"""The web service: FastAPI routes, a WebSocket stream and the browser page over
`coarse_loftr.Matcher`. Start it with `coarse-loftr serve`."""

from .app import create_app
from .settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
