"""docker-compose.yml without Docker: check its structure, then run each Python service natively.

The services' own commands and healthchecks run here as the containers would run them, with the
service hostnames swapped for local parts: a throwaway PostgreSQL database for `postgres`, a
Redis database of our own for `redis`, an aiosmtpd server for `mailpit`. Docker's image services
(postgres, redis, mailpit) are checked for structure only.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from newsletter.testing import stop_process
from tests.conftest import ROOT, create_pg_database, drop_pg_database, free_port

yaml = pytest.importorskip("yaml")
pytestmark = pytest.mark.integration

COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "web", "worker", "beat", "inbound")
BIN = Path(sys.executable).parent  # where `newsletter`, `celery` and `python` live natively


class Unset(Exception):
    """${VAR:?message} with VAR unset: Compose stops with the message."""


def interpolate(value, env: dict[str, str]):
    """Compose's variable substitution: ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR},
    $VAR, $$."""
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group("name") or m.group("bare"), m.group("op"), m.group("default")
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        if op == ":?" and not env.get(name):
            raise Unset(f"{name}: {default}")
        return env.get(name, "")

    pattern = r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}|\$(?P<bare>\w+)"
    return re.sub(pattern, one, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


DEV = {"NEWSLETTER_ENV_FILE": "deploy/compose/dev.env"}


def env_file_of(compose: dict, name: str, host_env: dict[str, str] | None = None) -> Path:
    """The settings file a service reads (`env_file:`), for the variables set on the host
    (development's by default)."""
    return ROOT / interpolate(compose["services"][name]["env_file"], DEV if host_env is None else host_env)


def service_env(compose: dict, name: str) -> dict[str, str]:
    """A service's environment as its container would see it (no variables set on the host):
    its env file, then its `environment:` entries over it, as Compose does."""
    from dotenv import dotenv_values

    values = {k: v or "" for k, v in dotenv_values(env_file_of(compose, name)).items()}
    raw = compose["services"][name].get("environment", {})
    return {**values, **{k: str(interpolate(str(v), {})) for k, v in raw.items()}}


def depends(compose: dict, name: str) -> dict[str, str]:
    deps = compose["services"][name].get("depends_on", {})
    return {k: v["condition"] for k, v in deps.items()}


# ---- structure ------------------------------------------------------------------------------


def test_compose_declares_the_services_healthchecks_volumes_and_order(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "mailpit", "migrate", "web", "worker", "beat", "inbound"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["mailpit"]["image"].startswith("axllent/mailpit")

    # Every long-running service says how to tell it is healthy; the one-shot does not restart.
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no" and "healthcheck" not in service
            continue
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2, name
        assert check["interval"] and check["retries"] >= 3, name
        assert service["restart"] == "unless-stopped", name

    # Start order: data services healthy -> migrate exited 0 -> web, worker, beat.
    assert depends(compose, "migrate") == {"postgres": "service_healthy"}
    for name in ("web", "worker"):
        assert depends(compose, name) == {
            "migrate": "service_completed_successfully",
            "redis": "service_healthy",
            "mailpit": "service_healthy",
        }, name
    assert depends(compose, "beat") == {
        "migrate": "service_completed_successfully",
        "redis": "service_healthy",
    }

    # One image built from this repository runs every Python service.
    for name in APP_SERVICES:
        assert services[name]["build"] == "." and services[name]["image"] == "paper-digest:dev"
    assert services["web"]["command"][:4] == ["newsletter", "serve", "--host", "0.0.0.0"]
    assert services["migrate"]["command"] == ["newsletter", "db", "upgrade"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "workers", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "workers", "beat"]
    assert services["inbound"]["command"][:3] == ["newsletter", "inbound", "serve"]
    assert depends(compose, "inbound") == {"migrate": "service_completed_successfully"}
    # The web app, in dev mode with the public dev secret by default, is reachable from this
    # machine only (as Mailpit is); `serve` then accepts 0.0.0.0 inside the container.
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "--published-on-loopback" in services["web"]["command"]
    assert any(p.endswith(":8025:8025") for p in services["mailpit"]["ports"])

    # State lives in named volumes.
    mounts = {name: [v.split(":")[0] for v in s.get("volumes", [])] for name, s in services.items()}
    assert mounts["postgres"] == ["pgdata"] and mounts["redis"] == ["redisdata"]
    assert mounts["mailpit"] == ["mailpit"] and mounts["beat"] == ["beat"]
    assert set(compose["volumes"]) == {"pgdata", "redisdata", "mailpit", "beat"}
    assert "/var/lib/postgresql/data" in services["postgres"]["volumes"][0]


def test_compose_environment_is_wired_to_the_services_and_valid(compose, monkeypatch):
    from newsletter.config import ConfigError, Settings

    envs = [service_env(compose, name) for name in APP_SERVICES]
    assert all(e == envs[0] for e in envs)  # one shared settings file
    env = envs[0]
    # Every app service reads the same env file and nothing overrides it: with
    # NEWSLETTER_ENV_FILE set on the host, the operator's file (from `newsletter init`) is all
    # the containers get, as on a host with the systemd units.
    for name in APP_SERVICES:
        assert "environment" not in compose["services"][name], name
        assert env_file_of(compose, name) == ROOT / "deploy/compose/dev.env", name
        chosen = env_file_of(compose, name, {"NEWSLETTER_ENV_FILE": "./newsletter.env"})
        assert chosen == ROOT / "newsletter.env", name
        # No default: a shell without the variable recreated production from dev.env (dev mode,
        # the public secret, mail to Mailpit); Compose now stops and says what to set.
        with pytest.raises(Unset, match="NEWSLETTER_ENV_FILE: set NEWSLETTER_ENV_FILE"):
            env_file_of(compose, name, {})
    pg = compose["services"]["postgres"]["environment"]
    assert env["NEWSLETTER_DATABASE_URL"] == (
        f"postgresql+psycopg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{pg['POSTGRES_DB']}"
    )
    assert env["NEWSLETTER_BROKER_URL"] == "redis://redis:6379/0"
    assert (env["NEWSLETTER_SMTP_HOST"], env["NEWSLETTER_SMTP_PORT"]) == ("mailpit", "1025")
    assert env["NEWSLETTER_BASE_URL"] == "http://localhost:8000"
    assert env["NEWSLETTER_MODE"] == "dev"

    def settings_from(values: dict[str, str]) -> Settings:
        for key in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
            monkeypatch.delenv(key)
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        return Settings(_env_file=None)

    settings = settings_from(env)
    assert settings.uses_broker and settings.smtp_host == "mailpit" and settings.smtp_port == 1025
    assert settings.mail_from == "Paper Digest <digest@localhost>"
    # The placeholder secret only works in dev: production with it refuses to start.
    with pytest.raises(ConfigError):
        settings_from({**env, "NEWSLETTER_MODE": "production"})
    # The operator's file must not end up in the image (COPY . .) or in git.
    assert {"*.env", ".env"} <= set((ROOT / ".dockerignore").read_text().split())
    assert "/newsletter.env" in (ROOT / ".gitignore").read_text().split()


def test_compose_commands_match_the_systemd_units(compose):
    """The container path and the host path run the same programs with the same state paths."""
    units = {}
    for name in ("web", "worker", "beat", "inbound"):
        text = (ROOT / "deploy/systemd" / f"newsletter-{name}.service").read_text()
        [exec_start] = re.findall(r"^ExecStart=(.*)$", text, re.M)
        units[name] = exec_start.split()
        units[name][0] = Path(units[name][0]).name  # /opt/newsletter/bin/celery -> celery
    services = compose["services"]
    assert units["web"][:2] == services["web"]["command"][:2] == ["newsletter", "serve"]
    for name in ("worker", "beat"):
        assert units[name][:4] == services[name]["command"][:4], name
        assert "--loglevel=INFO" in units[name] and "--loglevel=INFO" in services[name]["command"]
    assert units["inbound"][:3] == services["inbound"]["command"][:3] == ["newsletter", "inbound", "serve"]
    schedule = "--schedule=/var/lib/newsletter/celerybeat-schedule"
    assert schedule in units["beat"] and schedule in services["beat"]["command"]


def test_dockerfile_installs_the_package_on_python_311_slim():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "pip install ." in text and re.search(r"^USER app$", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".env", "var", "artifacts"} <= set(ignored)
    for needed in (
        "pyproject.toml",
        "README.md",
        "newsletter",
        "workers",
        "templates",
        "migrations",
    ):  # what `pip install .` reads from the build context
        assert (ROOT / needed).exists(), needed


# ---- each service's command, run natively ---------------------------------------------------


class Service:
    """One compose service's command as a local process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output():
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"{self.name}: no {needle!r}:\n{self.output()[-3000:]}"
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc, timeout=15, group=True)
        self._out.close()


def healthcheck(test: list[str], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a compose healthcheck `test` as Docker does: exec for CMD, `sh -c` for CMD-SHELL."""
    kind, *rest = test
    argv = ["/bin/sh", "-c", rest[0]] if kind == "CMD-SHELL" else rest
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_each_python_service_starts_natively_and_becomes_healthy(compose, redis_db, smtp_server, tmp_path):
    box, smtp_port = smtp_server
    services = compose["services"]
    env = service_env(compose, "web")
    db_url = create_pg_database()  # empty: the migrate service creates the schema
    port = free_port()
    beat_dir = str(tmp_path / "beat")
    os.makedirs(beat_dir)

    def swap(text: str) -> str:
        return text.replace("/var/lib/newsletter", beat_dir).replace(":8000/", f":{port}/")

    def native(value):
        """Swap what only exists in the containers for its local stand-in."""
        value = interpolate(value, {})
        if isinstance(value, list):
            return [str(port) if v == "8000" else swap(v) for v in value]
        return swap(value)

    local = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        **env,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_BROKER_URL": redis_db,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(smtp_port),
        "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOSTNAME": socket.gethostname(),
    }  # Docker sets it to the container's node name
    assert env["NEWSLETTER_DATABASE_URL"].split("@")[1].startswith("postgres:5432/")
    running: list[Service] = []
    try:
        # migrate: a one-shot that must exit 0 before anything else starts.
        started = time.monotonic()
        migrate = subprocess.run(
            native(services["migrate"]["command"]),
            cwd=ROOT,
            env=local,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        assert "up to date" in migrate.stdout
        timings = {"migrate": time.monotonic() - started}

        for name in ("web", "worker", "beat"):
            argv = native(services[name]["command"])
            running.append(Service(name, argv, local, tmp_path / f"{name}.log"))
        web, worker, beat = running

        # web: its healthcheck (GET /healthz) passes.
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert web.proc.poll() is None, web.output()[-3000:]
            assert time.monotonic() < deadline, web.output()[-3000:]
            time.sleep(0.1)
        check = healthcheck(native(services["web"]["healthcheck"]["test"]), local)
        assert check.returncode == 0, check.stderr
        timings["web"] = time.monotonic() - started

        # worker: logs "ready." and answers `celery inspect ping` addressed to its node name.
        worker.wait_for_output("ready.", timeout=40)
        check = healthcheck(native(services["worker"]["healthcheck"]["test"]), local)
        assert check.returncode == 0 and "pong" in check.stdout, check.stdout + check.stderr
        timings["worker"] = time.monotonic() - started

        # beat: starts, stays up, and its schedule file makes the healthcheck pass.
        beat.wait_for_output("beat: Starting", timeout=30)
        check = healthcheck(native(services["beat"]["healthcheck"]["test"]), local)
        assert check.returncode == 0, check.stderr
        time.sleep(1.0)
        assert beat.proc.poll() is None, beat.output()[-3000:]
        timings["beat"] = time.monotonic() - started

        # Wired together: a signup on web is mailed by the worker through "mailpit".
        r = httpx.post(
            f"http://127.0.0.1:{port}/subscribe", data={"email": "compose@example.org", "interests": "robots"}
        )
        assert r.status_code == 202
        [confirm] = box.wait_for(1, to="compose@example.org", timeout=20)
        assert f"http://127.0.0.1:{port}/confirm/" in confirm.get_body(("plain",)).get_content()
        assert "send_journey_email" in worker.output()
        for service in running:
            assert service.proc.poll() is None, (service.name, service.output()[-3000:])
        print("compose services healthy after (s):", {k: round(v, 1) for k, v in timings.items()})
    finally:
        for service in running:
            service.stop()
        drop_pg_database(db_url)


def test_the_inbound_service_starts_natively_and_its_healthcheck_passes(compose, tmp_path):
    service = compose["services"]["inbound"]
    port = str(free_port())
    native = [port if v == "2525" else v for v in interpolate(service["command"], {})]
    check = [v.replace("2525", port) for v in interpolate(service["healthcheck"]["test"], {})]
    db_url = create_pg_database()
    local = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        **service_env(compose, "inbound"),
        "NEWSLETTER_DATABASE_URL": db_url,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    inbound = Service("inbound", native, local, tmp_path / "inbound.log")
    try:
        inbound.wait_for_output("Taking mail for", timeout=30)
        deadline = time.monotonic() + 20
        while healthcheck(check, local).returncode != 0:
            assert inbound.proc.poll() is None and time.monotonic() < deadline, inbound.output()[-3000:]
            time.sleep(0.2)
    finally:
        inbound.stop()
        drop_pg_database(db_url)
