"""Serving with waitress: start in one line or fail in one line, stop cleanly on a signal.

Start-up checks the settings, the data directory, the restore lock, the key and the database,
then binds the socket; any failure is one line on standard error naming the setting at fault,
and exit status 1. The "serving on" banner is printed once the socket is bound.

SIGTERM or SIGINT stops accepting connections, lets the requests in progress finish (for at
most ``PHASE_LITE_STOP_TIMEOUT`` seconds), writes the buffered read audit events, closes the
database and exits 0. A second signal cuts the wait short.
"""

import errno
import logging
import os
import signal
import socket
import sys
import threading
import time

from . import __version__
from .access_log import configure_logging
from .config import (Config, ConfigError, load_config, moved_install_error, old_default_install,
                     unknown_settings)
from .links import base_url, serves_plain_http_to_everyone

log = logging.getLogger("phase_lite.server")


def every(name: str, interval: float, job) -> threading.Event:
    """Run the housekeeping ``job`` now and then every ``interval`` seconds in a daemon thread
    named ``name`` (a run the store fails is logged and tried again next time); set the Event
    to stop."""
    from .store import StoreError

    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                job()
            except StoreError as exc:
                log.error("%s failed: %s", name, exc)
            stop.wait(interval)

    threading.Thread(target=run, name=name, daemon=True).start()
    return stop

LISTEN_ERRORS = {
    errno.EADDRINUSE: "{listen} is already in use (another server on that port?)",
    errno.EADDRNOTAVAIL: "{host} is not an address of this machine",
    errno.EACCES: "not allowed to listen on {listen} (ports below 1024 need privileges)",
}


def main(config: Config | None = None) -> None:
    """Serve until a signal; exit 0 after a clean stop, 1 after a one-line start-up error."""
    try:
        serving = start(config)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    serving.run()
    sys.exit(0)


def start(config: Config | None = None) -> "Serving":
    """Check everything and bind the socket; raise ConfigError naming the setting at fault."""
    from .app import create_app
    from .backup import hold_serving_lock

    config = config or load_config()
    check_data_dir(config)
    configure_logging(config)
    for line in unknown_settings():
        log.warning("%s", line)
    if serves_plain_http_to_everyone(config):
        log.warning("listening on all interfaces (%s) over plain HTTP with no https:// "
                    "PHASE_LITE_PUBLIC_URL: tokens and passwords cross the network in the clear "
                    "unless a TLS proxy is in front; set PHASE_LITE_PUBLIC_URL to its address",
                    config.listen)
    try:
        lock = hold_serving_lock(config)  # held until the process ends: "in use" for restore
    except OSError as exc:
        raise ConfigError(f"PHASE_LITE_DATA_DIR: cannot open the serving lock file in "
                          f"{config.data_dir} ({exc.strerror})") from None
    try:
        app = create_app(config)
        try:
            check_oidc_provider(app)
            server = bind(app, config)
        except BaseException:
            app.extensions["phase_lite"].close()
            raise
    except BaseException:
        lock.close()
        raise
    return Serving(app, server, lock, config)


def check_oidc_provider(app) -> None:
    """A configured OpenID provider must be the issuer it claims to be: a wrong issuer URL
    (not found, not an OpenID configuration, another issuer) stops start-up; a provider that
    does not answer now only delays its console sign-in (``oidc.check_at_start``)."""
    from .console.oidc import ProviderMisconfigured, check_at_start

    provider = app.extensions.get("phase_lite_oidc")
    if provider is None:
        return
    try:
        check_at_start(provider)
    except ProviderMisconfigured as exc:
        raise ConfigError(f"PHASE_LITE_OIDC_ISSUER: {exc}") from None


def check_data_dir(config: Config) -> None:
    """The data directory must exist and be writable (the database's journal lives there).

    On PostgreSQL nothing of the database lives there: a node whose key comes from
    PHASE_LITE_MASTER_KEY needs no data directory at all.
    """
    if config.database_url:
        return
    for setting, directory in (("PHASE_LITE_DATA_DIR", config.data_dir),
                               ("PHASE_LITE_DATABASE", config.database.parent)):
        if not directory.is_dir():
            if old := old_default_install(config):
                raise moved_install_error(config, old)
            raise ConfigError(f"{setting}: no directory {directory} (run 'phase-lite init')")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"{setting}: {directory} is not writable by this user "
                              f"(uid {os.getuid()})")


def bind(app, config: Config):
    """The waitress server listening on PHASE_LITE_LISTEN (bound, not yet answering)."""
    import waitress

    from .server_errors import answer_refusals_as_json

    # Bodies hold plaintext secrets: waitress must keep them in memory, never spill them into
    # temporary files (its defaults do past 512 KB in, 1 MB out). It refuses a body over the
    # limit (declared, or as chunks arrive) before buffering more than the limit, so a buffer
    # one limit large never overflows to disk.
    max_body = config.max_body_bytes + 1  # waitress refuses at >= its setting
    try:
        server = waitress.create_server(
            app, listen=config.listen, threads=config.threads, ident="phase_lite",
            max_request_body_size=max_body, inbuf_overflow=max(max_body + 65536, 524288),
            outbuf_overflow=sys.maxsize,
            # The app believes X-Forwarded-For and X-Forwarded-Proto from the peers in
            # PHASE_LITE_TRUSTED_PROXIES only (``context.client_ip``, ``console.is_https``);
            # waitress would otherwise delete them from every request before it sees them.
            clear_untrusted_proxy_headers=False)
    except socket.gaierror:
        raise ConfigError(f"PHASE_LITE_LISTEN: cannot resolve the host {config.host}") from None
    except OSError as exc:
        reason = LISTEN_ERRORS.get(exc.errno, "cannot listen on {listen} ({strerror})")
        raise ConfigError("PHASE_LITE_LISTEN: " + reason.format(
            listen=config.listen, host=config.host, strerror=exc.strerror)) from None
    except ValueError:
        raise ConfigError(f"PHASE_LITE_LISTEN: cannot listen on {config.listen}") from None
    answer_refusals_as_json(server)  # its own 413, 431 and 400 in the {"error"} shape
    return server


class Serving:
    """A bound server: ``run`` answers until a signal, then stops cleanly."""

    def __init__(self, app, server, lock, config: Config):
        from waitress.server import BaseWSGIServer

        self.app = app
        self.server = server
        self.lock = lock
        self.config = config
        self.map = getattr(server, "map", None) or server._map
        self.listeners = [d for d in self.map.values() if isinstance(d, BaseWSGIServer)]
        self.stop_requested = False
        self.deadline = None

    def run(self) -> None:
        from waitress import wasyncore

        from . import audit, lockbox, mirror

        services = self.app.extensions["phase_lite"]
        db = services.db
        if days := self.config.audit_retention_days:
            every("audit-retention", audit.RETENTION_INTERVAL,
                  lambda: audit.apply_retention(db, days))
        every("lockbox-purge", lockbox.PURGE_INTERVAL, lambda: lockbox.purge_expired(db))
        if interval := self.config.mirror_interval:
            every("mirror-sync", min(mirror.TICK, interval),
                  lambda: mirror.sync_due(services, interval))
        previous = {sig: signal.signal(sig, self.request_stop)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        self.print_banner()
        print("\n".join(storage_lines(self.config)), file=sys.stderr, flush=True)
        log.info("phase_lite %(version)s started on %(listen)s (pid %(pid)d)",
                 {"event": "start", "version": __version__, "listen": self.config.listen,
                  "pid": os.getpid()})
        adj = self.server.adj
        try:
            while not self.stop_requested:
                wasyncore.loop(timeout=adj.asyncore_loop_timeout, map=self.map,
                               use_poll=adj.asyncore_use_poll, count=1)
            unfinished = self.drain(wasyncore)
        finally:
            services.close()
            self.lock.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("phase_lite stopped (%(unfinished)d requests unfinished)",
                 {"event": "stop", "unfinished": unfinished})

    def request_stop(self, signum, frame):
        if self.stop_requested:
            self.deadline = 0  # a second signal: stop waiting
            return
        self.stop_requested = True
        self.deadline = time.monotonic() + self.config.stop_timeout
        for listener in self.listeners:
            listener.pull_trigger()  # wake the loop now

    def drain(self, wasyncore) -> int:
        """Stop accepting, let requests in progress finish; return how many did not."""
        for listener in self.listeners:
            wasyncore.dispatcher.close(listener)  # the listening socket only
        adj = self.server.adj
        while self.in_progress() and time.monotonic() < self.deadline:
            wasyncore.loop(timeout=0.05, map=self.map, use_poll=adj.asyncore_use_poll, count=1)
        unfinished = self.in_progress()
        self.server.task_dispatcher.shutdown(
            cancel_pending=True, timeout=max(0.0, self.deadline - time.monotonic()))
        wasyncore.close_all(self.map)
        return unfinished

    def in_progress(self) -> int:
        """Connections with a request being answered or an answer not yet sent."""
        return sum(1 for channel in list(self.map.values())
                   if getattr(channel, "requests", None)
                   or getattr(channel, "total_outbufs_len", 0))

    def print_banner(self):
        base = base_url(self.config)
        print(f"phase_lite {__version__} serving on http://{self.config.listen}\n"
              f"  REST API:        {base}/service/public/v1/secrets/\n"
              f"  OpenAPI:         {base}/service/public/openapi.json\n"
              f"  Phase CLI/SDKs:  export PHASE_HOST={base}", file=sys.stderr, flush=True)


MASTER_KEY_WARNING = ("keep a copy of the key apart from the backups: a backup opens only "
                      "with it, and the two together open every secret")


def storage_lines(config: Config) -> list[str]:
    """Where the install lives: data directory, database and master key, for ``serve``'s
    banner and ``init``."""
    key = ("PHASE_LITE_MASTER_KEY (from the environment)" if config.master_key_env
           else str(config.master_key_file))
    lines = [f"  Data directory:  {config.data_dir}"]
    if config.database_url or config.database.parent != config.data_dir:
        lines.append(f"  Database:        {config.database_name}")
    return lines + [f"  Master key:      {key}", f"  ({MASTER_KEY_WARNING})"]
