"""The root and health endpoints, answered as Phase answers them."""

from flask.views import MethodView

from .. import __version__, schemas
from . import PhaseBlueprint, json_response

blp = PhaseBlueprint("meta", __name__, description="Liveness of the API")

ROOT_MESSAGE = (
    "API is alive. Please see https://docs.phase.dev/public-api for documentation on available "
    "endpoints."
)


@blp.route("/")
class Root(MethodView):
    @blp.doc(security=[])
    @blp.alt_response(200, schema=schemas.Alive, description="The API is alive", success=True)
    def get(self):
        """Say that the API is alive"""
        return json_response({"message": ROOT_MESSAGE, "status": "ok"})


@blp.route("/health/")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.alt_response(200, schema=schemas.Health, description="Liveness and version",
                      success=True)
    def get(self):
        """Report liveness and the server version"""
        return json_response({"status": "alive", "version": __version__})
