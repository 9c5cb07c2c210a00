"""docker-compose.yml, checked without Docker: its commands exist, its services are healthy-checked and ordered,
and it sets only the environment variables Settings reads.

Commands are parsed by the real `steward` click tree (unknown commands, unknown options and bad
values fail as they would in the container); environment names come from Settings itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import yaml

from steward.cli import main
from workflows.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
STEWARD_SERVICES = ("migrate", "bot", "worker", "scheduler")
LONG_RUNNING = ("postgres", "redis", "bot", "worker", "scheduler")
REQUIRED_VARIABLES = {"DATABASE_URL", "BROKER_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    """The compose file's services, with anchors and `<<` merge keys resolved (PyYAML does both)."""
    document = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return document["services"]


def resolve(argv: list[str]) -> click.Command:
    """The command `steward <argv>` runs, parsed as click would parse it; raises click's error if invalid."""
    assert argv and argv[0] == "steward", f"not a steward command: {argv}"
    # make_context parses (options, types, required arguments) without running anything.
    ctx = main.make_context("steward", list(argv[1:]))
    command: click.Command = main
    while isinstance(command, click.Group):
        # A group given no subcommand has already raised click's "no command" usage error.
        name, command, rest = command.resolve_command(ctx, unparsed(ctx))
        ctx = command.make_context(name, rest, parent=ctx)
    return command


def unparsed(ctx: click.Context) -> list[str]:
    """What a group left for its subcommand: the subcommand's name, then its arguments."""
    # click 8.2 made `protected_args` private (the public name still works, with a warning).
    protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
    return [*protected, *ctx.args]


def settings_variables() -> set[str]:
    """The environment variable names Settings reads (its field names or aliases, with its env_prefix)."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add((alias or f"{prefix}{field_name}").upper())
    # pydantic-settings matches names case-insensitively unless told otherwise.
    assert not Settings.model_config.get("case_sensitive", False)
    return names


def environment_names(service: dict) -> set[str]:
    """The names of the variables a service's `environment:` sets (mapping or list form)."""
    environment = service.get("environment") or {}
    if isinstance(environment, dict):
        return {name.upper() for name in environment}
    return {entry.split("=", 1)[0].upper() for entry in environment}


def steward_commands(services: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """Every `steward …` command line in the file: each service's command and health check test."""
    found = []
    for name, service in services.items():
        command = service.get("command")
        if isinstance(command, list) and command[:1] == ["steward"]:
            found.append((f"{name}.command", command))
        test = (service.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test[:2] == ["CMD", "steward"]:
            found.append((f"{name}.healthcheck", test[1:]))
    return found


def test_the_stack_has_every_service(services):
    assert {"bot", "worker", "scheduler", "postgres", "redis", "migrate"} <= set(services)


def test_commands_are_exec_form(services):
    # A string command runs through /bin/sh; the list form is what the checks below can parse.
    for name in STEWARD_SERVICES:
        assert isinstance(services[name]["command"], list), f"{name}: command should be a list"


def test_every_steward_command_exists_with_valid_options(services):
    commands = steward_commands(services)
    # migrate, bot, worker and scheduler commands, and the three probes.
    assert len(commands) == 7, commands
    for where, argv in commands:
        try:
            resolve(argv)
        except click.ClickException as exc:
            pytest.fail(f"{where}: `{' '.join(argv)}` is not a valid steward command: {exc.format_message()}")


def test_the_resolver_refuses_what_the_cli_refuses():
    # So a broken compose command cannot slip past test_every_steward_command_exists_with_valid_options.
    assert resolve(["steward", "db", "upgrade"]).name == "upgrade"
    for argv in (["steward", "serv"], ["steward", "db"], ["steward", "serve", "--prot", "3000"],
                 ["steward", "serve", "--port", "x"], ["steward", "probe"], ["steward", "db", "current", "now"]):
        with pytest.raises(click.ClickException):
            resolve(argv)


def test_processes_listen_where_they_are_probed(services):
    ports = {"bot": ("--port", "3000"), "worker": ("--health-port", "8001"),
             "scheduler": ("--health-port", "8002")}
    for name, (option, port) in ports.items():
        command = services[name]["command"]
        assert command[command.index(option) + 1] == port, f"{name}: {command}"
        probe = services[name]["healthcheck"]["test"]
        assert probe[1:3] == ["steward", "probe"], probe
        assert probe[-1] == f"http://127.0.0.1:{port}/readyz", probe
    assert services["bot"]["command"][:2] == ["steward", "serve"]
    assert "--workers" in services["bot"]["command"]


def test_every_long_running_service_has_an_enabled_healthcheck_and_restarts(services):
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), check
        assert services[name].get("restart") == "unless-stopped", f"{name}: restart policy"
    assert services["postgres"]["healthcheck"]["test"][-1].startswith("pg_isready")
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


def test_migrate_runs_once_before_the_steward_processes(services):
    migrate = services["migrate"]
    assert migrate["command"] == ["steward", "db", "upgrade"]
    # Quoted in the file: a bare `no` is YAML's false, which compose rejects.
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("bot", "worker", "scheduler"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_steward_services_set_only_variables_settings_reads(services):
    known = settings_variables()
    assert {"DATABASE_URL", "SLACK_BOT_TOKEN", "STEWARD_POLICY"} <= known  # the derivation works
    for name in STEWARD_SERVICES:
        names = environment_names(services[name])
        assert names <= known, f"{name} sets variables Settings never reads: {sorted(names - known)}"
        assert REQUIRED_VARIABLES <= names, f"{name} does not set {sorted(REQUIRED_VARIABLES - names)}"


def test_steward_services_share_one_image_and_environment(services):
    images = {services[name].get("image") for name in STEWARD_SERVICES}
    environments = [services[name]["environment"] for name in STEWARD_SERVICES]
    assert images == {"steward:latest"}
    assert all(environment == environments[0] for environment in environments)
    assert environments[0]["BROKER_URL"].startswith("redis://redis:")
    assert environments[0]["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:" in environments[0]["DATABASE_URL"]


def test_the_dockerfile_runs_and_probes_real_commands():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    exec_forms = [json.loads(line.split("CMD", 1)[1]) for line in dockerfile.splitlines()
                  if line.startswith(("CMD ", "HEALTHCHECK "))]
    assert len(exec_forms) == 2, exec_forms
    for argv in exec_forms:
        resolve(argv)


# Read by `steward serve` from its own environment (gunicorn's convention, prometheus_client's folder),
# or named by the policy (a webhook connector's secret); not Settings fields.
PROCESS_VARIABLES = {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR", "STEWARD_IAM_WEBHOOK_SECRET"}


def test_env_example_names_only_variables_steward_reads():
    lines = (REPO_ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    named = {line.lstrip("# ").split("=", 1)[0] for line in lines
             if "=" in line and line.lstrip("# ").split("=", 1)[0].isupper()}
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL", "BROKER_URL"} <= named
    assert named - settings_variables() - PROCESS_VARIABLES == set()
