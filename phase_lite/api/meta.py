"""The root and health endpoints, answered as Phase answers them."""

from .. import __version__, schemas
from . import json_response
from .docs import PhaseBlueprint, ScopedView

blp = PhaseBlueprint("meta", __name__, description="Liveness of the API")

ROOT_MESSAGE = (
    "API is alive. Please see https://docs.phase.dev/public-api for documentation on available "
    "endpoints."
)


@blp.route("/")
class Root(ScopedView):
    @blp.operation(200, schemas.Alive, "The API is alive", public=True)
    def get(self):
        """Say that the API is alive"""
        return json_response({"message": ROOT_MESSAGE, "status": "ok"})


@blp.route("/health/")
class Health(ScopedView):
    @blp.operation(200, schemas.Health, "Liveness and version", public=True)
    def get(self):
        """Report liveness and the server version"""
        return json_response({"status": "alive", "version": __version__})
