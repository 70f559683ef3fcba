"""Every link phase_lite prints or shows is built here, so that each is one a user can open.

``PHASE_LITE_PUBLIC_URL``, when set, starts every link: setup and invitation links, Lockbox
links, the serve banner's ``PHASE_HOST``. Without it, a link shown in answer to a request
follows that request (its Host, and ``https`` when it came over TLS or from a trusted proxy
sending ``X-Forwarded-Proto: https``), and a link printed by the admin command or the banner
follows ``PHASE_LITE_LISTEN`` (an all-interfaces address printed as ``localhost``).
"""

from werkzeug.wsgi import get_host

from .config import Config

ALL_INTERFACES = ("0.0.0.0", "::", "[::]", "")


def listen_url(config: Config) -> str:
    """``http://host:port`` of PHASE_LITE_LISTEN (what this process itself can be reached at)."""
    host = "localhost" if config.host in ALL_INTERFACES else config.host
    return f"http://{host}:{config.port}"


def request_is_https(config: Config, environ) -> bool:
    """The request came over HTTPS: to this server, or to a trusted proxy that says so."""
    from .request_context import is_trusted_proxy

    if environ.get("wsgi.url_scheme") == "https":
        return True
    return bool(config.trusted_proxies) and is_trusted_proxy(
        environ.get("REMOTE_ADDR"), config.trusted_proxies) and \
        environ.get("HTTP_X_FORWARDED_PROTO", "").strip().lower() == "https"


def base_url(config: Config, environ=None) -> str:
    """Where links start: the public URL; else the request's scheme and host (``environ``, a
    WSGI environment); else the listen address."""
    if config.public_url:
        return config.public_url
    if environ is not None:
        scheme = "https" if request_is_https(config, environ) else "http"
        return f"{scheme}://{get_host(environ)}"
    return listen_url(config)


def link(config: Config, path: str, environ=None) -> str:
    """The absolute link to ``path`` (``/console/welcome?token=...``) on this server."""
    return base_url(config, environ) + path


def serves_plain_http_to_everyone(config: Config) -> bool:
    """Listening on all interfaces without a public URL: links and sign-ins go over plain HTTP
    unless a TLS proxy is in front, which the server cannot know."""
    return config.host in ALL_INTERFACES and not (
        config.public_url and config.public_url.startswith("https://"))
