"""``gastown-operator``: run the operator, or print its CRD.

Flags map one-to-one onto :class:`gastown.settings.Settings`; a flag left out keeps
the value from the environment (``GASTOWN_*``, what the Helm chart sets) or the
default. This is the only place that builds Settings.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from gastown.settings import Settings

logger = logging.getLogger("gastown.operator")
EXIT_TASK_DIED = 3
"""Exit status when a supervised task died (see gastown.controller.supervisor)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The Gas Town operator: runs Polecats in tmux over SSH or as Pods."""


@main.command()
@click.option("--namespace", "namespaces", multiple=True, help="Namespace to watch (repeatable); none: all.")
@click.option("--workers", type=int, help="Concurrent reconciles.")
@click.option("--webhook/--no-webhook", "webhook_enabled", default=None, help="Serve the admission webhook.")
@click.option("--webhook-port", type=int, help="HTTPS port of the admission webhook.")
@click.option(
    "--webhook-cert-dir", type=click.Path(path_type=Path), help="Directory with tls.crt and tls.key."
)
@click.option("--metrics-port", type=int, help="Port of /metrics.")
@click.option("--health-port", type=int, help="Port of /healthz and /readyz.")
@click.option("--log-format", type=click.Choice(["json", "text"]), help="Log line format.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option(
    "--leader-elect/--no-leader-elect", "leader_election", default=None, help="Elect a leader by Lease."
)
@click.option("--lease-name", help="Name of the leader-election Lease.")
@click.option("--operator-namespace", help="Namespace of the operator (its Lease, webhook Secret).")
@click.option("--identity", help="Leader-election identity (default: hostname_pid).")
@click.option("--kubeconfig", type=click.Path(path_type=Path, dir_okay=False), help="kubeconfig file.")
@click.option("--shutdown-grace", type=float, help="Seconds in-flight reconciles get at shutdown.")
def run(**flags: Any) -> None:
    """Run the operator until SIGTERM/SIGINT (exit 3 if one of its long-lived tasks died)."""
    overrides = {key: value for key, value in flags.items() if value is not None and value != ()}
    if "namespaces" in overrides:
        overrides["namespaces"] = list(overrides["namespaces"])
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"])
            click.echo(f"gastown-operator: invalid setting {location}: {error['msg']}", err=True)
        sys.exit(2)

    from gastown.logging_setup import configure_logging  # noqa: PLC0415 - only when running

    configure_logging(settings.log_format, settings.log_level)
    from gastown.controller.manager import Manager  # noqa: PLC0415 - heavy imports only for `run`
    from gastown.controller.supervisor import TaskDiedError  # noqa: PLC0415

    logger.info(
        "starting",
        extra={
            "namespaces": settings.namespaces or "all",
            "workers": settings.workers,
            "leader_election": settings.leader_election,
        },
    )
    try:
        asyncio.run(Manager(settings).run())
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        sys.exit(130)
    except TaskDiedError as exc:  # logged when it happened; exit so the Deployment restarts us
        click.echo(f"gastown-operator: {exc}; exiting for a restart", err=True)
        sys.exit(EXIT_TASK_DIED)


@main.command()
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Use this cluster instead of starting the test lab.",
)
@click.option("--no-example", is_flag=True, help="Do not apply the example Polecats (one of each mode).")
@click.option(
    "--exit-when-working",
    is_flag=True,
    help="Stop as soon as the example Polecat is Working (exit 0) or failed (exit 1); for scripts.",
)
@click.option(
    "--shell",
    "open_shell",
    is_flag=True,
    help="Open a shell with the dev environment (PATH, KUBECONFIG, GASTOWN_SSH_*); exiting it stops dev.",
)
def dev(kubeconfig: Path | None, no_example: bool, exit_when_working: bool, open_shell: bool) -> None:
    """Run everything on this machine: test lab, CRD, webhook, sshd, operator, an example."""
    from gastown.cli.dev import DevOptions, run_dev  # noqa: PLC0415 - starts a whole lab
    from gastown.devcluster.binaries import LabBinariesMissingError  # noqa: PLC0415
    from gastown.devcluster.gitserver import GitServerError  # noqa: PLC0415
    from gastown.devcluster.sshd import SshdError  # noqa: PLC0415
    from gastown.logging_setup import configure_logging  # noqa: PLC0415

    configure_logging("text", "WARNING")
    options = DevOptions(
        kubeconfig=kubeconfig, example=not no_example, exit_when_working=exit_when_working, shell=open_shell
    )
    try:
        code = asyncio.run(run_dev(options))
    except (LabBinariesMissingError, SshdError, GitServerError) as exc:
        click.echo(f"gastown-operator dev: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:  # before dev's own handlers were installed: nothing started yet
        sys.exit(130)
    # Everything is stopped: a late Ctrl-C must not turn a clean exit into a traceback.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)


@main.command()
def crd() -> None:
    """Print the CustomResourceDefinitions: Polecat, Rig and Convoy (multi-document YAML)."""
    from gastown.api.crd import render_crds  # noqa: PLC0415 - generated by the api package

    click.echo(render_crds(), nl=False)


if __name__ == "__main__":
    main()
