"""A stand-in Debian host for following the README's production section (and docs/operations.md)
as written: its commands run in a fresh clone, with every difference from a real host spelled
out here.

- `/etc`, `/opt` and `/var/lib` are folders under a temporary root; the commands' paths are
  rewritten to them, and NEWSLETTER_ENV_FILE names the stand-in for /etc/newsletter/newsletter.env
  (the default location) for commands run by hand.
- `python3 -m venv` + `pip install .`: a venv made `--without-pip`, whose `.pth` file adds this
  checkout's .venv site-packages (the dependencies; installing them afresh takes minutes on this
  machine), then `pip install --no-deps .`: a real, non-editable install of the clone, so a
  module or data file missing from the package fails here as it would in production.
- Root-only steps (apt-get, adduser, chgrp, `sudo -u postgres`) are replaced by what the test
  already has: the packages on this machine, a throwaway PostgreSQL database, its own user.
  `sudo -u newsletter CMD` runs CMD as the test's user.
- `systemctl` starts, restarts and stops the installed unit files' ExecStart with their
  Environment= and WorkingDirectory= (paths rewritten, port 8000 swapped for a free one); nginx
  and Postfix run as private instances (their own config, pid and queue folders, free ports,
  loopback only) instead of the system ones. Postfix relays to an in-process SMTP server
  (`relayhost`), so the test reads what left the relay.
Any command that none of the rules in `Host.run_command` knows fails the test: a new step in the
README needs a rule here, not silence.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from newsletter.testing import PG_ADMIN, free_port, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
VENV_SITE = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
DOMAIN = "news.example.org"  # the README's placeholder domain
TEST_DOMAIN = "news.paperdigest-ci.org"  # what the test gives `init`: deliverable-looking, never leaves


def marked_blocks(path: Path, marker: str) -> dict[str, str]:
    """The ```sh blocks that follow `<!-- {marker}: NAME -->` lines, by NAME, in order."""
    pattern = rf"<!-- {marker}: ([\w-]+) -->\n```sh\n(.*?)```"
    return dict(re.findall(pattern, path.read_text(), re.S))


def commands(block: str) -> list[str]:
    """A block's commands: continuation lines joined, a here-document kept with its command."""
    out: list[str] = []
    lines = block.splitlines()
    while lines:
        line = lines.pop(0)
        while line.endswith("\\"):
            line = line[:-1] + " " + lines.pop(0).strip()
        heredoc = re.search(r"<<-?'?(\w+)'?", line)
        if heredoc:
            body = []
            while lines[0] != heredoc.group(1):
                body.append(lines.pop(0))
            line = "\n".join([line, *body, lines.pop(0)])
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line)
    return out


class Host:
    """The temporary root, the processes started for it, and the rules for each command."""

    def __init__(self, root: Path, clone: Path, db_url: str, redis_url: str, relay_port: int) -> None:
        self.root, self.clone, self.db_url = root, clone, db_url
        self.web_port, self.https_port, self.http_port = free_port(), free_port(), free_port()
        self.smtp_port, self.relay_port, self.inbound_port = free_port(), relay_port, free_port()
        self.base_url = f"https://localhost:{self.https_port}"
        self.env_file = root / "etc/newsletter/newsletter.env"
        self.cert = root / "etc/letsencrypt/live" / TEST_DOMAIN / "fullchain.pem"
        self.units: dict[str, subprocess.Popen] = {}
        self.started: list[str] = []  # unit names, in the order they were (re)started
        self.offsets: dict[str, int] = {}  # where each unit's log began at its last start
        self.nginx: subprocess.Popen | None = None
        self.postfix_running = False
        self.swaps = {  # README text -> this host; one pass, longest first
            "postgresql+psycopg://newsletter@/newsletter": db_url,
            "--dbname=newsletter": f"--dbname={db_url.replace('+psycopg', '')}",
            "redis://127.0.0.1:6379/0": redis_url,
            f"https://{DOMAIN}": self.base_url,
            DOMAIN: TEST_DOMAIN,
            "/etc/": f"{root}/etc/",
            "/opt/newsletter": f"{root}/opt/newsletter",
            "/var/lib/newsletter": f"{root}/var/lib/newsletter",
            "/var/backups/newsletter": f"{root}/var/backups/newsletter",
            "/var/log/nginx/": f"{root}/var/log/nginx/",
            "127.0.0.1:8000": f"127.0.0.1:{self.web_port}",
            "--port 8000": f"--port {self.web_port}",
            "[127.0.0.1]:2525": f"[127.0.0.1]:{self.inbound_port}",
            "--port 2525": f"--port {self.inbound_port}",
            # Postfix's smtpd listens on a free port here, not 25.
            "NEWSLETTER_SMTP_HOST=127.0.0.1\n": f"NEWSLETTER_SMTP_HOST=127.0.0.1\nNEWSLETTER_SMTP_PORT={self.smtp_port}\n",  # noqa: E501
        }
        for folder in ("etc/systemd/system", "etc/nginx/sites-available", "etc/nginx/sites-enabled",
                       "etc/postfix", "opt", "var/lib", "var/log/nginx", "var/backups/newsletter", "run",
                       "spool/postfix", "postfix-data", "logs"):  # fmt: skip
            (root / folder).mkdir(parents=True, exist_ok=True)

    # ---- text and environment --------------------------------------------------------------

    def swap(self, text: str) -> str:
        keys = sorted(self.swaps, key=len, reverse=True)
        return re.sub("|".join(map(re.escape, keys)), lambda m: self.swaps[m.group(0)], text)

    def env(self, **extra: str) -> dict[str, str]:
        """What a root shell on the host has: no NEWSLETTER_* but the default env file's stand-in."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.pop("PYTHONPATH", None)
        return {**env, "NEWSLETTER_ENV_FILE": str(self.env_file), **extra}

    def sh(self, command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.clone,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert not check or done.returncode == 0, (
            f"{command}\n-> {done.returncode}\n{done.stdout}{done.stderr}"
        )
        return done

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    # ---- the rules ---------------------------------------------------------------------------

    def run_block(self, block: str, together: bool = False) -> list[subprocess.CompletedProcess]:
        """Run a block's commands in order. `together`: consecutive shell commands run in one
        shell, as typed into one terminal (for blocks that keep values in shell variables)."""
        results: list[subprocess.CompletedProcess] = []
        pending: list[str] = []
        for command in commands(block):
            script = self.shell_text(command)
            if script is not None and together:
                pending.append(script)
                continue
            if pending:
                results.append(self.sh("\n".join(pending)))
                pending = []
            done = self.sh(script) if script is not None else self.emulate(command)
            if done is not None:
                results.append(done)
            if command.startswith("install ") and "deploy/nginx/newsletter.conf" in command:
                self.localise_nginx_site(Path(self.swap(command.split()[-1])))
        if pending:
            results.append(self.sh("\n".join(pending)))
        return results

    def shell_text(self, command: str) -> str | None:
        """The command as this host's shell runs it, or None if it is emulated (below)."""
        words = command.split()
        if words[:3] == ["sudo", "-u", "newsletter"]:
            return self.shell_text(command.split(None, 3)[3])
        if words[0] in ("apt-get", "adduser", "chgrp", "systemctl", "sudo", "python3", "nginx") or (
            words[0].endswith("/bin/pip")
        ):
            return None
        if words[0] == "postconf":
            return self.swap(command).replace("postconf", f"postconf -c {self.root}/etc/postfix", 1)
        if words[0] == "journalctl":  # the units' output is in their log files here
            unit = words[words.index("-u") + 1]
            return self.swap(re.sub(r"^journalctl [^|]*", f"cat {self.log(unit)} ", command))
        if words[0] == "curl":
            return self.swap(command).replace("curl", f"curl --cacert {self.cert}", 1)
        return self.swap(command)

    def emulate(self, command: str) -> subprocess.CompletedProcess | None:
        """Root-only and service-manager steps; None for those the host already has."""
        words = command.split()
        if words[:2] == ["apt-get", "install"] or words[0] in ("adduser", "chgrp"):
            return None  # packages are here (scripts/system-deps.sh); no system user or group
        if words[:3] == ["sudo", "-u", "postgres"]:
            return self.postgres(words[3], words[-1])
        if words[:3] == ["python3", "-m", "venv"]:
            return self.make_venv(Path(self.swap(words[3])))
        if words[0].endswith("/bin/pip") and words[1:] == ["install", "."]:
            return self.pip_install(Path(self.swap(words[0])).parent.parent)
        if words[0] == "systemctl":
            return self.systemctl(words[1], [w for w in words[2:] if not w.startswith("--")])
        if words == ["nginx", "-t"]:
            return self.sh(f"nginx -t -c {self.nginx_conf()}")
        raise AssertionError(f"no rule for {command!r}: add one to tests/production.py")

    def postgres(self, tool: str, name: str) -> None:
        """`createuser`: nothing (the test connects as postgres); `createdb`/`dropdb newsletter`:
        create or drop the test's database, whose URL stands in for `newsletter`."""
        assert name == "newsletter", name
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        db = self.db_url.rsplit("/", 1)[1]
        with admin.connect() as conn:
            if tool == "dropdb":
                conn.execute(text(f'DROP DATABASE "{db}" WITH (FORCE)'))
            elif tool == "createdb":
                exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": db}).first()
                if not exists:
                    conn.execute(text(f'CREATE DATABASE "{db}"'))
            else:
                assert tool == "createuser", tool
        admin.dispose()

    def make_venv(self, path: Path) -> subprocess.CompletedProcess:
        done = self.sh(f"{shlex.quote(sys.executable)} -m venv --without-pip {path}")
        site = next(path.glob("lib/python3*/site-packages"))
        (site / "_newsletter_test_deps.pth").write_text(f"{VENV_SITE}\n")
        return done

    def pip_install(self, venv: Path) -> subprocess.CompletedProcess:
        done = self.sh(f"{venv}/bin/python -m pip install --quiet --no-deps --disable-pip-version-check .")
        # pip installs only our console script (`newsletter`); celery's comes with its package.
        celery = venv / "bin/celery"
        celery.write_text(
            f"#!{venv}/bin/python\nimport sys\nfrom celery.__main__ import main\nsys.exit(main())\n"
        )
        celery.chmod(0o755)
        return done

    # ---- systemd ------------------------------------------------------------------------------

    def unit(self, name: str) -> dict[str, list[str]]:
        """The [Service] settings of an installed unit file, each key's values in order."""
        text = (self.root / "etc/systemd/system" / f"{name}.service").read_text()
        section = text.split("[Service]", 1)[1].split("\n[", 1)[0]
        settings: dict[str, list[str]] = {}
        for line in section.splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                settings.setdefault(key.strip(), []).append(value.strip())
        return settings

    def start_unit(self, name: str) -> None:
        unit = self.unit(name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.pop("PYTHONPATH", None)
        for assignment in unit.get("Environment", []):
            key, value = self.swap(assignment).split("=", 1)
            env[key] = value
        workdir = Path(self.swap(unit["WorkingDirectory"][0]))
        workdir.mkdir(parents=True, exist_ok=True)  # StateDirectory=
        argv = shlex.split(self.swap(unit["ExecStart"][0]).replace("%%", "%"))
        self.started.append(name)
        self.offsets[name] = self.log(name).stat().st_size if self.log(name).exists() else 0
        out = open(self.log(name), "ab")
        self.units[name] = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop_unit(self, name: str) -> None:
        proc = self.units.pop(name, None)
        if proc is not None:
            stop_process(proc, timeout=30, group=True)

    def systemctl(self, verb: str, names: list[str]) -> subprocess.CompletedProcess | None:
        for name in names:
            if name == "nginx":
                self.start_nginx()
            elif name == "postfix":
                self.restart_postfix()
            elif verb in ("enable", "start", "restart"):
                self.stop_unit(name)
                self.start_unit(name)
            elif verb == "stop":
                self.stop_unit(name)
            else:
                raise AssertionError(f"no rule for systemctl {verb} {name}")
        return None  # daemon-reload: units are read when started

    def wait_for_log(self, name: str, needle: str, timeout: float = 45) -> None:
        """Wait for `needle` in what the unit logged since its last start."""
        deadline = time.monotonic() + timeout
        while needle not in self.log(name).read_bytes()[self.offsets.get(name, 0) :].decode(errors="replace"):
            proc = self.units.get(name)
            assert proc is None or proc.poll() is None, f"{name} exited:\n{self.tail(name)}"
            assert time.monotonic() < deadline, f"{name}: no {needle!r}:\n{self.tail(name)}"
            time.sleep(0.2)

    def wait_ready(self) -> None:
        """Each running unit has started since its last (re)start: worker, beat, inbound, web."""
        if "newsletter-worker" in self.units:
            self.wait_for_log("newsletter-worker", "ready.")
        if "newsletter-beat" in self.units:
            self.wait_for_log("newsletter-beat", "beat: Starting")
        if "newsletter-inbound" in self.units:
            self.wait_for_log("newsletter-inbound", "inbound.listening")
        if "newsletter-web" in self.units:
            web = self.units["newsletter-web"]
            wait_healthy(
                f"http://127.0.0.1:{self.web_port}",
                alive=lambda: web.poll() is None,
                describe=lambda: self.tail("newsletter-web"),
            )

    def tail(self, name: str) -> str:
        return self.log(name).read_text(errors="replace")[-4000:]

    # ---- nginx ----------------------------------------------------------------------------------

    def localise_nginx_site(self, site: Path) -> None:
        """Free ports on loopback and the test's certificate instead of 80, 443 and certbot's."""
        text = self.swap(site.read_text())
        text = text.replace("listen 80;", f"listen 127.0.0.1:{self.http_port};")
        text = text.replace("listen [::]:80;", f"listen [::1]:{self.http_port};")
        text = text.replace("listen 443 ", f"listen 127.0.0.1:{self.https_port} ")
        text = text.replace("listen [::]:443 ", f"listen [::1]:{self.https_port} ")
        site.write_text(text)
        key = self.cert.with_name("privkey.pem")
        self.cert.parent.mkdir(parents=True, exist_ok=True)
        self.sh(
            f"openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -keyout {key} "
            f"-out {self.cert} -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
        )

    def nginx_conf(self) -> Path:
        """Debian's /etc/nginx/nginx.conf, reduced to what a private instance needs."""
        conf, tmp = self.root / "etc/nginx/nginx.conf", self.root / "var/lib/nginx"
        tmp.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"pid {self.root}/run/nginx.pid;\nerror_log {self.root}/var/log/nginx/error.log;\n"
            "worker_processes 1;\nevents { worker_connections 64; }\n"
            f"http {{\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
            f"  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n"
            f"  scgi_temp_path {tmp}/scgi;\n  access_log off;\n"
            f"  include {self.root}/etc/nginx/sites-enabled/*;\n}}\n"
        )
        return conf

    def start_nginx(self) -> None:
        if self.nginx is None:
            log = open(self.log("nginx"), "ab")
            self.nginx = subprocess.Popen(
                ["nginx", "-c", str(self.nginx_conf()), "-g", "daemon off;"], stdout=log, stderr=log
            )
        else:
            self.sh(f"nginx -c {self.nginx_conf()} -s reload")

    # ---- Postfix ------------------------------------------------------------------------------

    def prepare_postfix(self) -> None:
        """What installing Debian's postfix leaves, for a private instance: its own main.cf and
        master.cf, queue and data folders, smtpd on a free loopback port, `relayhost` the sink."""
        etc = self.root / "etc/postfix"
        shutil.copy("/etc/postfix/master.cf", etc / "master.cf")
        if Path("/etc/postfix/dynamicmaps.cf").exists():
            shutil.copy("/etc/postfix/dynamicmaps.cf", etc / "dynamicmaps.cf")
        (etc / "main.cf").write_text("")
        data = self.root / "postfix-data"
        shutil.chown(data, "postfix")
        pc = f"postconf -c {etc}"
        self.sh(
            f"{pc} -e queue_directory={self.root}/spool/postfix data_directory={data} "
            f"alternate_config_directories={etc} compatibility_level=3.6 mynetworks=127.0.0.0/8 "
            f"relayhost=[127.0.0.1]:{self.relay_port} "
            f"maillog_file={self.log('postfix')} maillog_file_prefixes={self.root}/logs "
            f"inet_protocols=ipv4"
        )
        self.sh(f"{pc} -MX smtp/inet")
        self.sh(f"{pc} -M '127.0.0.1:{self.smtp_port}/inet=127.0.0.1:{self.smtp_port} inet n - n - - smtpd'")
        self.sh(f"{pc} -M 'postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd'")
        self.sh(f"{pc} -F '*/*/chroot = n'")

    def restart_postfix(self) -> None:
        etc = self.root / "etc/postfix"
        if self.postfix_running:
            self.sh(f"postfix -c {etc} stop", check=False)
        self.sh(f"postfix -c {etc} start")
        self.postfix_running = True
        deadline = time.monotonic() + 15
        while subprocess.run(["bash", "-c", f"echo > /dev/tcp/127.0.0.1/{self.smtp_port}"],
                             capture_output=True, check=False).returncode:  # fmt: skip
            assert time.monotonic() < deadline, self.log("postfix").read_text(errors="replace")[-3000:]
            time.sleep(0.2)

    # ---- the end --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        for name in list(self.units):
            self.stop_unit(name)
        if self.nginx is not None:
            stop_process(self.nginx)
        if self.postfix_running:
            self.sh(f"postfix -c {self.root}/etc/postfix stop", check=False)
