"""How an endpoint of the API is made: one blueprint class, one decorator, one base view.

- ``PhaseBlueprint(name, import_name, description=..., errors={status: meaning})``: the
  blueprint of one HTTP surface; ``errors`` says what each error status means there (the
  OpenAPI document's description of its ``{"error": ...}`` answers).
- ``@blp.operation(status, schema, description, errors=(...), ...)``: a view's whole entry in
  the OpenAPI document: its success answer, its error answers, its body and parameters, and
  whether it is a phase_lite extension or public. It only annotates the view: no wrapper runs
  per request.
- ``ScopedView``: a route's view; ``steps`` runs the route's steps before any handler
  (authenticate, scope, throttle, permission: ``pipeline`` for secrets) and returns what the
  handler gets ahead of the URL's values.

A view's docstring is the operation's summary.
"""

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from ..schemas import Error

EXTENSION = "x-phase-lite-extension"  # marks what Phase's API does not have
BEARER = [{"bearer": []}]  # a user's or service account's token (``register_api``'s scheme)


def json_body(schema) -> dict:
    """A required JSON request body of ``schema`` (a marshmallow schema or a JSON schema)."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


class PhaseBlueprint(Blueprint):
    """flask-smorest's Blueprint, with ``operation`` the one way to document a view.

    Upstream's ``doc`` and ``alt_response`` wrap the view in one more function per decorator,
    each call going through ``ensure_sync`` (six layers on a secrets GET); here they only feed
    the OpenAPI document, so the view keeps the document upstream builds and loses the
    wrappers.
    """

    def __init__(self, *args, errors=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.error_meanings = dict(errors or {})

    def operation(self, status=200, schema=None, description=None, *, errors=(), body=None,
                  parameters=None, headers=None, answers=None, extension=False, public=False,
                  meanings=None, **doc):
        """Document a view.

        ``status``, ``schema`` (None: no body), ``description`` and ``headers``: the success
        answer (``status`` None: the operation never succeeds). ``errors``: its error statuses,
        described by the blueprint's ``errors`` table (``meanings`` overrides some).
        ``body``: the JSON request body's schema. ``answers``: other answers, ``{status:
        {description, headers, schema}}`` (a 304). ``extension``: a phase_lite extension.
        ``public``: no token needed (every other operation says it needs one). Any other
        keyword (``servers``) goes to the operation.
        """
        described = {**self.error_meanings, **(meanings or {})}
        extra = dict(doc)
        if parameters is not None:
            extra["parameters"] = parameters
        if body is not None:
            extra["requestBody"] = json_body(body)
        if extension:
            extra[EXTENSION] = True
        extra["security"] = [] if public else BEARER

        def decorate(view):
            view = _annotate_only(super(PhaseBlueprint, self).doc(**extra))(view)
            for code in reversed(errors):
                view = self._alternative(code, schema=Error, description=described[code])(view)
            for code, answer in reversed((answers or {}).items()):
                view = self._alternative(code, **answer)(view)
            if status is not None:
                view = self._alternative(status, schema=schema, description=description,
                                         headers=headers, success=True)(view)
            return view

        return decorate

    def _alternative(self, *args, **kwargs):
        return _annotate_only(super().alt_response(*args, **kwargs))

    def doc(self, **kwargs):
        raise TypeError("document a view with PhaseBlueprint.operation")

    def alt_response(self, *args, **kwargs):
        raise TypeError("document a view with PhaseBlueprint.operation")

    def response(self, *args, **kwargs):
        raise TypeError("document a view with PhaseBlueprint.operation")


def _annotate_only(decorator):
    def annotate(view):
        view._apidoc = decorator(view)._apidoc
        return view
    return annotate


class ScopedView(MethodView):
    """The view of a route: ``steps`` first, then the handler of the request's method (a
    HEAD without one: the GET's, as Flask does) with what the steps returned, then the URL's
    values.

    Routes that answer every method (Phase answers the ones it lacks after its checks) refuse
    them in ``steps``. Views keep no per-request state on ``self`` unless they set
    ``init_every_request`` (the management views do).
    """

    init_every_request = False

    def steps(self, environ, method, **url_values) -> tuple:
        """Run the route's steps on the request; return the handler's leading arguments."""
        return ()

    def dispatch_request(self, **url_values):
        method = request.method
        found = self.steps(request.environ, method, **url_values)
        handler = getattr(self, method.lower(), None)
        if handler is None and method == "HEAD":
            handler = self.get
        return handler(*found, **url_values)
