"""Run the demo: a private OpenSSH host and PostgreSQL 15 shop behind a bastion, in one folder.

Started by scripts/demo with the venv's Python. The first run creates everything in the demo
folder; later runs reuse it. Ctrl-C (SIGINT), SIGTERM or SIGHUP stop every process it started,
and so does a step that fails half-way. `demo_stack.py code NAME` prints a demo user's current
TOTP code, `password NAME` their password, `pg-password NAME` the two together (what the
PostgreSQL door wants).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pyotp
from demo_processes import (
    Children,
    DemoError,
    accepts,
    free_port,
    healthy,
    serves_banner,
    wait_until,
)
from demo_targets import DemoTargets

ROOT = Path(__file__).resolve().parent.parent
BASTION = str(Path(sys.executable).with_name("bastion"))
READY = "bastion demo is ready"
ENGINEER = "alice"
USERS = (("admin", "admin"), (ENGINEER, "engineer"))
DEFAULT_PORTS = {"ssh": 2222, "postgres": 6432, "web": 8080}
POLICY = """
# --- Added by scripts/demo: policy for the demo's two targets ----------------
[targets.demo-web]
description = "The demo's SSH host (a private OpenSSH server on loopback)"

[targets.demo-shop]
description = "The demo shop's database: customers and orders, full of personal data"
unmask_max = "4h"
tls = "verify-full"
tls_ca = "postgres/tls/bastion-ca.pem"

[targets.demo-shop.masking]
# Names are personal data too, though no name rule says so; notes and delivery notes are
# free text, which the content detectors scan for emails, phones and card numbers.
sensitive = ["public.customers.full_name"]
subject_keys = ["public.customers.id", "public.orders.customer_id"]
"""


class Stop(Exception):
    """A signal asked the demo to stop."""


class Bastion:
    """The bastion CLI on the demo's config; a failing command is a DemoError with its message."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BASTION, "--config", str(self.config), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )

    def json(self, *args: str, input: str | None = None) -> Any:
        done = self.run(*args, "--json", input=input)
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise DemoError(f"bastion {' '.join(args[:2])} failed: {message}")
        return json.loads(done.stdout)


class Demo:
    """The demo folder: the bastion, its users and their sign-in file, and the targets."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.config = directory / "bastion.toml"
        self.users_file = directory / "users.json"
        self.logs = directory / "logs"
        self.bastion = Bastion(self.config)

    def users(self) -> dict[str, dict[str, str]]:
        try:
            found: dict[str, dict[str, str]] = json.loads(self.users_file.read_text())
        except FileNotFoundError:
            return {}
        return found

    def prepare_bastion(self) -> bool:
        """`bastion init` and the demo's policy the first time; the admin and engineer when
        missing, with a password and TOTP seed kept in the private users.json. Returns whether
        the bastion is new (then nothing is asked of it: each CLI call costs seconds)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o711)  # the postgres and login users must reach their files inside
        self.logs.mkdir(mode=0o700, exist_ok=True)
        fresh = not self.config.exists()
        if not fresh:
            say(f"reusing the demo in {self.dir} (delete it to start again)")
        else:
            say(f"creating a demo bastion in {self.dir}")
            ports = {name: _port_from_env(name) for name in DEFAULT_PORTS}
            self.bastion.json("init", str(self.dir), *[a for name, port in ports.items()
                              for a in (f"--{name}-port", str(port))])  # fmt: skip
        if "[targets.demo-shop]" not in self.config.read_text():
            with self.config.open("a") as handle:
                handle.write(POLICY)
        existing = set() if fresh else {row["name"] for row in self.bastion.json("user", "list")}
        for name, role in USERS:
            if name not in existing:
                self._add_user(name, role)
        return fresh

    def _add_user(self, name: str, role: str) -> None:
        say(f"adding the {role} {name!r}, with a password and TOTP")
        password = os.urandom(12).hex()
        args = ["user", "add", name, "--role", role, "--password-stdin"]
        args += ["--qr-png", str(self.dir / f"{name}-totp.png")]
        if role == "engineer" and (key := _own_ssh_key()) is not None:
            args += ["--ssh-key", str(key)]
        made = self.bastion.json(*args, input=password + "\n")
        secret = pyotp.parse_uri(made["otpauth_uri"]).secret
        users = self.users()
        users[name] = {"role": role, "password": password, "totp_secret": secret}
        fd = os.open(self.users_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(users, handle, indent=2)
            handle.write("\n")

    def ensure_grants(self, targets: Sequence[str], fresh: bool) -> None:
        """Give the engineer 12 hours on each target unless a grant is live now."""
        rows = [] if fresh else self.bastion.json("grants", "list", "--user", ENGINEER, "--active")
        live = {row["target"] for row in rows}
        for target in targets:
            if target in live:
                continue
            say(f"granting {ENGINEER} 12 hours on {target}")
            reason = "the demo: try the door and see what is recorded"
            self.bastion.json("grant", ENGINEER, target, "--for", "12h", "--reason", reason)

    def ports(self) -> dict[str, int]:
        """The bastion's listener ports, from its config."""
        import tomllib  # noqa: PLC0415 - only here

        listeners = tomllib.loads(self.config.read_text())["listeners"]
        return {name: int(listeners[name]["port"]) for name in DEFAULT_PORTS}


def _port_from_env(name: str) -> int:
    """BASTION_DEMO_<NAME>_PORT, else the usual port when it is free, else any free port."""
    value = os.environ.get(f"BASTION_DEMO_{name.upper()}_PORT")
    if value:
        if not value.isdigit():
            raise DemoError(f"BASTION_DEMO_{name.upper()}_PORT={value!r} is not a port")
        return int(value)
    port = free_port(DEFAULT_PORTS[name])
    if port != DEFAULT_PORTS[name]:
        say(f"port {DEFAULT_PORTS[name]} is taken; the {name} door uses {port}")
    return port


def _own_ssh_key() -> Path | None:
    for name in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"):
        path = Path.home() / ".ssh" / name
        if path.is_file():
            return path
    return None


def say(text: str) -> None:
    sys.stderr.write(f"\033[1m==> {text}\033[0m\n")
    sys.stderr.flush()


def _demo_command() -> str:
    """How to call scripts/demo again from where the person started it."""
    script = ROOT / "scripts" / "demo"
    caller = Path(os.environ.get("BASTION_DEMO_CALLER_PWD", os.getcwd()))
    shown = f"./{script.relative_to(caller)}" if script.is_relative_to(caller) else str(script)
    if "BASTION_DEMO_DIR" in os.environ:
        shown = f"BASTION_DEMO_DIR={shlex.quote(os.environ['BASTION_DEMO_DIR'])} {shown}"
    return shown


def _conninfo_value(value: str) -> str:
    """A libpq connection-string value, quoted when it holds a space, quote or backslash."""
    if not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def instructions(demo: Demo, ssh_login: str) -> str:
    ports, cmd = demo.ports(), _demo_command()
    ca = demo.dir / "tls" / "bastion-ca.pem"
    conninfo = (f"host=127.0.0.1 port={ports['postgres']} user={ENGINEER} dbname=demo-shop"
                f" sslmode=verify-full sslrootcert={_conninfo_value(str(ca))}")  # fmt: skip
    query = "SELECT * FROM customers"
    return f"""
The demo bastion is running, with a private SSH host (demo-web, logins land on the
unprivileged user {ssh_login!r}) and a shop database (demo-shop) behind it. Everything
lives in {demo.dir}; delete that folder to start again.

Sign-in (demo only): the users' passwords and TOTP secrets are kept in the private file
{demo.users_file}; print one with: {cmd} password alice
Scan {demo.dir}/alice-totp.png and admin-totp.png with an authenticator
app, or print a current code with: {cmd} code alice
(each code works once; wait for the next one to log in again).

Three things to try, in another terminal:

  1. SSH through the bastion to the demo host (alice's password, then a code); recorded:
       ssh -p {ports["ssh"]} {ENGINEER}+demo-web@127.0.0.1

  2. The shop's customers through the PostgreSQL door, masked (the password is alice's
     password followed by a current code):
       PGPASSWORD="$({cmd} pg-password alice)" psql "{conninfo}" -c {shlex.quote(query)}

  3. The web console (TLS only): https://127.0.0.1:{ports["web"]}/  (sign in as admin or
     alice: password, then a code). Its certificate is signed by the demo's own CA, {ca};
     trust that file in your browser, or check the console with it:
       curl --cacert {shlex.quote(str(ca))} https://127.0.0.1:{ports["web"]}/healthz
     As admin, Live sessions shows the SSH session of step 1 and can end it.

Then look at what was recorded:
  {BASTION} --config {demo.config} sessions list
  {BASTION} --config {demo.config} queries list
  {BASTION} --config {demo.config} audit verify
Logs are in {demo.logs}. Stop everything with Ctrl-C.
"""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def run(demo: Demo) -> int:
    """Provision, start, wait for a signal or a death; always stop what was started."""
    children = Children(demo.logs)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        fresh = demo.prepare_bastion()
        targets = DemoTargets(demo.dir, demo.bastion.json, say)
        targets.start(children, fresh)
        demo.ensure_grants(targets.names, fresh)
        serve = [BASTION, "--config", str(demo.config), "serve"]
        children.start("bastion", serve, stop_signal=signal.SIGINT)
        ports = demo.ports()
        ca = demo.dir / "tls" / "bastion-ca.pem"
        wait_until("the bastion", lambda: serves_banner(ports["ssh"])
                   and accepts(ports["postgres"]) and healthy(ports["web"], ca),
                   children)  # fmt: skip
        print(instructions(demo, targets.login.pw_name), flush=True)
        print(READY, flush=True)
        while True:
            children.check_running()
            time.sleep(0.5)
    except Stop as stop:
        say(f"{stop}: stopping")
        return 0
    except DemoError as error:
        sys.stderr.write(f"demo: {error}\n")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        children.stop()
        say("stopped")


def print_sign_in(demo: Demo, what: str, name: str) -> int:
    """Print a demo user's password, current TOTP code, or both run together."""
    user = demo.users().get(name)
    if user is None:
        sys.stderr.write(f"demo: no demo user {name!r} in {demo.users_file}\n")
        return 2
    code = pyotp.TOTP(user["totp_secret"]).now()
    print(
        {"code": code, "password": user["password"], "pg-password": user["password"] + code}[what]
    )
    return 0


def main(argv: Sequence[str]) -> int:
    demo = Demo(Path(os.environ.get("BASTION_DEMO_DIR") or ROOT / "demo").resolve())
    if len(argv) == 2 and argv[0] in ("code", "password", "pg-password"):
        return print_sign_in(demo, argv[0], argv[1])
    if argv:
        sys.stderr.write("usage: scripts/demo [code|password|pg-password NAME]\n")
        return 2
    return run(demo)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
