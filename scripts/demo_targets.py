"""The demo's two targets: a private OpenSSH server and a PostgreSQL 15 shop, made once in the
demo folder, started on loopback, and added to the bastion (host key confirmed) the first time."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
from demo_processes import Children, DemoError, free_port, serves_banner, wait_until

from bastion.pki import make_ssh_host_key, make_tls

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SSHD = "/usr/sbin/sshd"
SYSTEM_LOGIN = "bastion-demo"
"""The unprivileged account the demo SSH host's logins land on, when the demo runs as root."""
SSH_TARGET, PG_TARGET = "demo-web", "demo-shop"
SHOP_SQL = Path(__file__).with_name("demo_shop.sql")
SHOP_DB, SERVICE_ROLE = "shop", "shop_svc"
SUPERUSER = "postgres"

BastionJson = Callable[..., Any]
"""Runs `bastion ... --json` on the demo's config: (*args, input=None) -> parsed output."""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _check(argv: list[str], what: str, **kwargs: Any) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        lines = (done.stderr + done.stdout).strip().splitlines() or ["no message"]
        raise DemoError(f"{what} failed: {lines[-1]}")
    out: str = done.stdout
    return out


def ensure_system_login() -> pwd.struct_passwd:
    """The unprivileged `bastion-demo` user with /bin/sh, created when missing, and unlocked
    (sshd without PAM refuses a locked account; '*' means no password, not locked)."""
    try:
        entry = pwd.getpwnam(SYSTEM_LOGIN)
    except KeyError:
        argv = ["useradd", "--system", "--create-home", "--home-dir", f"/var/lib/{SYSTEM_LOGIN}",
                "--shell", "/bin/sh", "--comment", "bastion demo SSH host login",
                SYSTEM_LOGIN]  # fmt: skip
        for _attempt in range(20):  # useradd fails while another process holds /etc/passwd
            if subprocess.run(argv, capture_output=True, check=False).returncode in (0, 9):
                break
            time.sleep(0.2)
        entry = pwd.getpwnam(SYSTEM_LOGIN)
    if entry.pw_uid == 0:
        raise DemoError(f"the user {SYSTEM_LOGIN} is root; the demo wants an unprivileged login")
    for line in Path("/etc/shadow").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == SYSTEM_LOGIN and rest.startswith("!"):
            _check(["usermod", "-p", "*", SYSTEM_LOGIN], f"unlocking {SYSTEM_LOGIN}")
    return entry


class DemoTargets:
    """The SSH host and the shop database, in the demo folder's sshd/ and postgres/."""

    names = (SSH_TARGET, PG_TARGET)

    def __init__(self, directory: Path, bastion: BastionJson, say: Callable[[str], None]) -> None:
        self.dir = directory
        self.bastion = bastion
        self.say = say
        self.pg_dir = directory / "postgres"
        self.data = self.pg_dir / "data"
        self.sock = self.pg_dir / "sock"
        self.ssh_dir = directory / "sshd"
        as_root = os.geteuid() == 0
        self.pg_owner = pwd.getpwnam(SUPERUSER) if as_root else None
        self.login = pwd.getpwuid(os.getuid())
        """Whom SSH logins land on: bastion-demo as root, else whoever runs the demo."""

    def start(self, children: Children, fresh: bool) -> None:
        """Start both servers (making them the first time) and add them to the bastion (a
        fresh one has none yet)."""
        if os.geteuid() == 0:
            self.login = ensure_system_login()
            assert self.pg_owner is not None
            for user in (self.pg_owner, self.login):
                self._check_reachable(user)
        ports = self._ports()
        self._start_postgres(children, ports["postgres"])
        self._start_sshd(children, ports["sshd"])
        existing = {} if fresh else {row["name"]: row for row in self.bastion("target", "list")}
        if SSH_TARGET not in existing:
            self._add_ssh_target(ports["sshd"])
        elif not existing[SSH_TARGET]["host_key"]:
            self._trust()
        if PG_TARGET not in existing:
            self._add_pg_target(ports["postgres"])

    def _check_reachable(self, user: pwd.struct_passwd) -> None:
        kwargs: dict[str, Any] = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        if subprocess.run(["test", "-x", str(self.dir)], check=False, **kwargs).returncode:
            raise DemoError(
                f"the {user.pw_name} user cannot reach {self.dir} (a folder above it is private);"
                " run the demo in another folder, e.g."
                " BASTION_DEMO_DIR=/var/tmp/bastion-demo ./scripts/demo"
            )

    def _ports(self) -> dict[str, int]:
        """The two servers' ports: chosen free the first time, then kept (the targets say them)."""
        state = self.dir / "demo.json"
        try:
            ports: dict[str, int] = json.loads(state.read_text())["ports"]
        except FileNotFoundError:
            ports = {"sshd": free_port(), "postgres": free_port()}
            state.write_text(json.dumps({"ports": ports}) + "\n")
        return ports

    # --- PostgreSQL --------------------------------------------------------------------

    def _as_owner(self) -> dict[str, Any]:
        owner = self.pg_owner
        return {} if owner is None else {"user": owner.pw_uid, "group": owner.pw_gid,
                                         "extra_groups": []}  # fmt: skip

    def _own(self, path: Path) -> None:
        if self.pg_owner is not None:
            os.chown(path, self.pg_owner.pw_uid, self.pg_owner.pw_gid)

    def _server_env(self) -> dict[str, str]:
        return {"PATH": f"{PG_BIN}:/usr/bin:/bin", "HOME": str(self.pg_dir), "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8", "TZ": "UTC"}  # fmt: skip

    def _init_postgres(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.say("creating the demo shop's PostgreSQL 15 cluster")
        shutil.rmtree(self.pg_dir, ignore_errors=True)  # what a failed first run left
        self.pg_dir.mkdir(mode=0o711)
        tls = make_tls(self.pg_dir / "tls")
        for path in (tls.ca_cert.parent, tls.server_cert, tls.server_key):
            self._own(path)
        for path in (self.data, self.sock):
            path.mkdir(mode=0o700)
            self._own(path)
        _check([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
               "initdb", cwd=self.pg_dir, env=self._server_env(), umask=0o077,
               **self._as_owner())  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as handle:
            handle.write("\ninclude 'demo.conf'\n")

    def _start_postgres(self, children: Children, port: int) -> None:
        self._init_postgres()
        tls = self.pg_dir / "tls"
        conf = self.data / "demo.conf"
        conf.write_text(
            "# Written by scripts/demo at every start.\n"
            f"listen_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = {_quote(str(self.sock))}\nunix_socket_permissions = 0700\n"
            f"ssl = on\nssl_cert_file = {_quote(str(tls / 'server.pem'))}\n"
            f"ssl_key_file = {_quote(str(tls / 'server.key'))}\n"
            "password_encryption = 'scram-sha-256'\nlog_connections = on\n"
        )
        self._own(conf)
        argv = [str(PG_BIN / "postgres"), "-D", str(self.data)]
        children.start("postgres", argv, stop_signal=signal.SIGINT, user=self.pg_owner,
                       env=self._server_env(), cwd=self.pg_dir)  # fmt: skip
        ready = [str(PG_BIN / "pg_isready"), "-q", "-h", str(self.sock), "-p", str(port),
                 "-U", SUPERUSER, "-d", "postgres"]  # fmt: skip
        wait_until("the shop's PostgreSQL", lambda: subprocess.run(
            ready, check=False, env=self._client_env()).returncode == 0, children)  # fmt: skip
        self._port = port
        if self._psql("-Atc", f"SELECT 1 FROM pg_database WHERE datname = '{SHOP_DB}'") != "1\n":
            self.say("filling the shop database: customers and orders, with personal data")
            self._psql("-q", "-f", str(SHOP_SQL))

    def _client_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        return {**env, "PGCONNECT_TIMEOUT": "10", "LC_ALL": "C.UTF-8"}

    def _psql(self, *args: str, input: str | None = None) -> str:
        """psql as the superuser over the private socket (trusted there, and only there)."""
        argv = [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock),
                "-p", str(self._port), "-U", SUPERUSER, "-d", "postgres", *args]  # fmt: skip
        return _check(argv, "psql on the shop's PostgreSQL", input=input, env=self._client_env())

    def _add_pg_target(self, port: int) -> None:
        self.say(f"adding the shop database as the target {PG_TARGET}")
        password = os.urandom(18).hex()  # the bastion's own login; sealed, then forgotten
        self._psql(input=f"ALTER ROLE {SERVICE_ROLE} PASSWORD '{password}';\n")
        self.bastion("target", "add-postgres", PG_TARGET, "--host", "127.0.0.1", "--port",
                     str(port), "--database", SHOP_DB, "--user", SERVICE_ROLE,
                     "--password-stdin", input=password + "\n")  # fmt: skip

    # --- OpenSSH -----------------------------------------------------------------------

    def _start_sshd(self, children: Children, port: int) -> None:
        self.ssh_dir.mkdir(mode=0o711, exist_ok=True)
        host_key = self.ssh_dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            host_key.with_name(host_key.name + ".pub").unlink(missing_ok=True)
            make_ssh_host_key(host_key)
        keys = self.ssh_dir / "authorized_keys"
        if not keys.exists():
            keys.write_text("")
        keys.chmod(0o644)  # sshd reads it as the login
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self.ssh_dir / "sshd_config"
        config.write_text(self._sshd_config(port, host_key, keys))
        children.start("sshd", [SSHD, "-D", "-e", "-f", str(config)])
        wait_until("the demo SSH host", lambda: serves_banner(port), children)

    def _sshd_config(self, port: int, host_key: Path, keys: Path) -> str:
        lines = [
            "# Written by scripts/demo at every start.",
            f"ListenAddress 127.0.0.1:{port}",
            f"HostKey {host_key}",
            f"PidFile {self.ssh_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {keys}",
            f"AllowUsers {self.login.pw_name}",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "StrictModes no",
            "Subsystem sftp internal-sftp",
            "UseDNS no",
            "PrintMotd no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
        ]
        return "\n".join([*lines, ""])

    def _add_ssh_target(self, port: int) -> None:
        self.say(f"adding the SSH host as the target {SSH_TARGET} (logins land on"
                 f" {self.login.pw_name})")  # fmt: skip
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"bastion to {SSH_TARGET}")
        key_file = self.ssh_dir / "bastion_to_target_ed25519"
        key_file.unlink(missing_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.export_private_key("openssh"))
        line = key.export_public_key("openssh").decode().strip()
        (self.ssh_dir / "authorized_keys").write_text(f"restrict,pty {line}\n")
        try:
            self.bastion("target", "add-ssh", SSH_TARGET, "--host", "127.0.0.1", "--port",
                         str(port), "--login", self.login.pw_name,
                         "--key", str(key_file))  # fmt: skip
        finally:
            key_file.unlink()  # sealed in the bastion's store now; nobody else needs it
        self._trust()

    def _trust(self) -> None:
        """Pin the host key the bastion fetches, confirmed against the key made here."""
        pub = self.ssh_dir / "ssh_host_ed25519_key.pub"
        fingerprint = asyncssh.read_public_key(pub).get_fingerprint("sha256")
        done = self.bastion("target", "trust", SSH_TARGET, "--fingerprint", fingerprint)
        self.say(f"{SSH_TARGET}: host key {done['fingerprint']} confirmed and pinned")
