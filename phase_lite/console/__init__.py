"""The web console: server-rendered pages over the same domain functions as the API.

``web`` holds the plumbing (blueprint, sessions, CSRF, headers), ``actions`` every call into the
domain layer, ``sessions`` the sign-in rules (no Flask), and ``sign_in``, ``secrets_pages``,
``access_pages``, ``app_pages``, ``lockbox_pages``, ``oidc_pages`` and ``webauth_pages`` the
pages, each adding its routes to ``web.bp``; ``register_console`` puts them in an app (so
``web`` imports no page module).
"""


def register_console(app, services_):
    """Wire the console into the app: blueprint, sign-in throttle (its middleware for ``/`` is
    placed by ``app.build_middleware``, which counts the blueprint's request hooks among the
    app's own: they only run for console pages)."""
    from . import (access_pages, app_pages, lockbox_pages, oidc_pages,  # noqa: F401
                   secrets_pages, sessions, sign_in, webauth_pages)
    from .oidc import OpenIDProvider
    from .web import bp

    app.url_map.converters["link_data"] = webauth_pages.LinkData
    app.register_blueprint(bp)
    if services_.config.oidc is not None:
        app.extensions["phase_lite_oidc"] = OpenIDProvider(services_.config.oidc)
    app.extensions["phase_lite_console_throttle"] = sessions.make_sign_in_throttle(
        services_.config, services_.db)
    # Form bodies follow the body limit (Flask's own default, 500 KB, would refuse an
    # .env upload that the API accepts).
    app.config["MAX_FORM_MEMORY_SIZE"] = services_.config.max_body_bytes
