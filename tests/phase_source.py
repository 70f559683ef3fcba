"""A second phase_lite server, served on loopback, as the Phase host a mirror reads
(tests/test_mirror.py, tests/test_audit_kinds.py, tests/test_console_mirror_browser.py)."""

import support
from live import LiveServer
from phase_lite import apps
from phase_lite import secrets as secret_domain
from phase_lite.app import init_data_dir, open_services
from phase_lite.config import load_config
from phase_lite.store import apps as app_store


class PhaseSource:
    """A phase_lite data directory served by its own process: the source of a mirror."""

    def __init__(self, tmp_path):
        data_dir = tmp_path / "source"
        data_dir.mkdir(mode=0o700)
        self.config = load_config({"PHASE_LITE_DATA_DIR": str(data_dir)}, testing=True)
        self.owner = init_data_dir(self.config, "owner@source.example")
        self.services = open_services(self.config)
        self.by = support.principal_of(self.services, self.owner)
        self.server = LiveServer(data_dir)

    def env(self, app, env_name):
        app_row = app_store.find_apps_by_name(self.services.db,
                                              support.organisation_id(self.services), app)[0]
        return app_store.find_environment(self.services.db, app_row["id"], env_name)

    def create(self, app, env_name, *entries):
        return secret_domain.create_secrets(self.services, self.by, self.env(app, env_name),
                                            list(entries))

    def secrets(self, app, env_name):
        return secret_domain.list_secrets(self.services, None, self.env(app, env_name))

    def close(self):
        self.server.stop()
        self.services.close()

    def secret(self, app, env_name, key):
        return next(s for s in self.secrets(app, env_name) if s.key == key)

    def update(self, app, env_name, *changes):
        return secret_domain.update_secrets(self.services, self.by, self.env(app, env_name),
                                            list(changes))

    def app_row(self, name):
        return app_store.find_apps_by_name(self.services.db,
                                           support.organisation_id(self.services), name)[0]

    def rename_app(self, name, new_name):
        apps.update_app(self.services, self.by, self.app_row(name), {"name": new_name},
                        support.TEST_META)

    def delete_app(self, name):
        apps.delete_app(self.services, self.by, self.app_row(name), support.TEST_META)

    def rename_env(self, app, env_name, new_name):
        apps.rename_environment(self.services, self.by, self.env(app, env_name),
                                {"name": new_name}, support.TEST_META)

    def delete_env(self, app, env_name):
        apps.delete_environment(self.services, self.by, self.env(app, env_name),
                                support.TEST_META)
