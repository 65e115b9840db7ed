"""AIS's authentication server (cmd/authn) for `start --auth`.

The HMAC key it signs tokens with is the cluster's auth.signature.key; the admin password is set
on its first start (AIS_AUTHN_SU_PASS). Both live in <state>/authn/secret.json (mode 0600), never in
a log file; tokens are printed on stdout only.
"""

import json
import secrets

from . import build
from .common import HOST, Service, clean_env, die, http, read_json, wait_until, write_json

ADMIN = "admin"


class Authn:
    def __init__(self, state):
        self.dir = state / "authn"
        self.svc = Service("authn", self.dir)
        self.secret_file = self.dir / "secret.json"

    def url(self, port):
        return f"http://{HOST}:{port}"

    def secrets(self):
        got = read_json(self.secret_file)
        if not got:
            die(f"no authn secrets in {self.secret_file} (was the cluster started with --auth?)")
        return got

    def configure(self, port):
        """Write a fresh config and secrets; return the signing key for the cluster config."""
        key = secrets.token_urlsafe(32)
        write_json(self.secret_file, {"password": secrets.token_urlsafe(18), "key": key}, mode=0o600)
        conf = {
            "log": {"dir": str(self.dir / "log"), "level": "3"},
            "net": {"http": {"port": port, "use_https": False}},
            "auth": {"secret": key, "expiration_time": "24h"},
            "timeout": {"default_timeout": "30s"},
        }
        write_json(self.dir / "conf" / "authn.json", conf, mode=0o600)
        return key

    def start(self, port, timeout):
        exe = build.ensure_authn()
        env = dict(clean_env(), AIS_AUTHN_SU_PASS=self.secrets()["password"])
        # note: authn listens on all interfaces (":PORT"); it has no host setting
        p = self.svc.start([exe, "-config", self.dir / "conf"], env)
        wait_until(lambda: self.login(port, quiet=True), timeout, f"authn on :{port}", proc=p)
        return p

    def login(self, port, quiet=False):
        """A token for the admin user (the same one while it is valid), or None when quiet."""
        code, body = http(f"{self.url(port)}/v1/users/{ADMIN}", method="POST",
                          body={"password": self.secrets()["password"]}, timeout=5)
        if code == 200:
            try:
                return json.loads(body)["token"]
            except (ValueError, KeyError):
                pass
        if quiet:
            return None
        die(f"authn login as {ADMIN} at {self.url(port)} failed: {code} {body[:300]!r}")
