"""``gastown`` (also ``kubectl gastown``): the user's command line for Polecats.

Commands: ``list``, ``describe``, ``logs``, ``attach``, ``validate``, ``sling``. Each is
a thin click function that parses flags, runs one coroutine with :func:`_run` and
prints; the work lives in modules named for it (``kubeclient`` talks to the cluster,
``render`` formats, ``manifest`` builds and reads Polecat objects, ``workload`` knows
where work runs, ``progress`` follows a Polecat).

Contract with scripts and humans: output on stdout, every failure ONE line on stderr
(``gastown: ...``) and an exit code from :class:`gastown.cli.errors.ExitCode`; no
traceback unless ``--debug``. Heavy libraries (kubernetes_asyncio, asyncssh, rich's
live display) are imported inside the commands that need them so ``--help`` and
``validate`` start fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from gastown.cli.errors import EXIT_CODES_HELP, CLIError, ExitCode, from_exception
from gastown.cli.kubeclient import ClusterOptions

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class State:
    """What the group-level flags decided, handed to every command."""

    cluster: ClusterOptions
    debug: bool = False

    def merged(self, kubeconfig: Path | None, context: str | None, namespace: str | None) -> ClusterOptions:
        """Group flags overridden by the same flags given after the command name."""
        options = self.cluster
        if kubeconfig is not None:
            options = replace(options, kubeconfig=kubeconfig)
        if context is not None:
            options = replace(options, context=context)
        if namespace is not None:
            options = replace(options, namespace=namespace)
        return options


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(f"gastown: {message}", err=True)
    sys.exit(int(code))


def _run(state: State, coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one command's coroutine; turn every failure into one stderr line and an exit code."""
    try:
        return asyncio.run(coro_factory())
    except CLIError as exc:
        if state.debug:
            traceback.print_exc()
        _fail(exc.message, exc.code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `gastown logs -f | head`: the reader left. Quietly, like cat; stdout is gone.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:
        if state.debug:
            traceback.print_exc()
        error = from_exception(exc)
        _fail(error.message, error.code)


def cluster_options(func: F) -> F:
    """``--kubeconfig``, ``--context`` and ``-n``, accepted before or after the command name."""
    func = click.option(
        "-n", "--namespace", default=None, help="Namespace (default: the context's, else 'default')."
    )(func)
    func = click.option("--context", default=None, help="kubeconfig context to use.")(func)
    func = click.option(
        "--kubeconfig",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).",
    )(func)
    return func


def ssh_options(func: F) -> F:
    """How local-mode commands reach the operator host (flags over GASTOWN_SSH_* env)."""
    func = click.option(
        "--known-hosts",
        "known_hosts",
        type=click.Path(path_type=Path, dir_okay=False),
        help="known_hosts file with the host's key [env GASTOWN_SSH_KNOWN_HOSTS_FILE].",
    )(func)
    func = click.option(
        "--ssh-key",
        type=click.Path(path_type=Path, dir_okay=False),
        help="SSH private key [env GASTOWN_SSH_KEY_FILE].",
    )(func)
    func = click.option("--ssh-user", help="SSH user on the host [env GASTOWN_SSH_USER].")(func)
    func = click.option("--ssh-port", type=int, help="SSH port [env GASTOWN_SSH_PORT].")(func)
    func = click.option(
        "--ssh-host", help="SSH host (default: the Polecat's status.local.host, else GASTOWN_SSH_HOST)."
    )(func)
    return func


def _ssh(flags: dict[str, Any]) -> Any:
    from gastown.cli.workload import SSHOptions  # noqa: PLC0415

    return SSHOptions(
        host=flags.get("ssh_host"),
        port=flags.get("ssh_port"),
        user=flags.get("ssh_user"),
        key_file=flags.get("ssh_key"),
        known_hosts_file=flags.get("known_hosts"),
    )


def _quiet_libraries() -> None:
    """Library warnings (kubeconfig loader, asyncssh) must not add lines to our one-line errors."""
    for name in ("kubernetes_asyncio", "asyncssh", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@click.group(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@click.option("--debug", is_flag=True, help="Show tracebacks and library logs on errors.")
@click.version_option(package_name="gastown-operator", prog_name="gastown")
@click.pass_context
def main(
    ctx: click.Context, kubeconfig: Path | None, context: str | None, namespace: str | None, debug: bool
) -> None:
    """Work with Gas Town Polecats: AI coding agents run by the gastown operator.

    \b
    Examples:
      gastown sling gt-abc12 myrig --mode kubernetes --repo git@github.com:me/app.git \\
          --git-secret git-ssh --agent-secret anthropic --wait
      gastown list -A
      gastown describe my-polecat
      gastown logs my-polecat -f
      gastown attach my-polecat
      gastown validate -f polecat.yaml
      gastown convoy create batch-1 --rig myrig --bead gt-abc12 --bead gt-def34 --watch
      gastown rig list

    Also installed as kubectl-gastown, so `kubectl gastown ...` works the same.
    """
    if debug:
        logging.basicConfig(level=logging.DEBUG)
    else:
        _quiet_libraries()
    ctx.obj = State(ClusterOptions(kubeconfig, context, namespace), debug=debug)


# --------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------
@main.command("list", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@click.option("-A", "--all-namespaces", is_flag=True, help="List Polecats in every namespace.")
@click.option("-l", "--selector", help="Label selector, e.g. team=core.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "wide", "json", "yaml", "name"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.pass_obj
def list_command(
    state: State,
    /,
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
    output: str,
) -> None:
    """List Polecats: NAME, RIG, MODE, PHASE, BEAD, AGE."""
    from gastown.cli import render  # noqa: PLC0415
    from gastown.cli.kubeclient import connect  # noqa: PLC0415

    options = state.merged(kubeconfig, context, namespace)

    async def fetch() -> tuple[str, list[dict[str, Any]]]:
        async with connect(options) as cluster:
            target = None if all_namespaces else cluster.namespace
            result = await cluster.list_polecats(target, selector=selector)
            return cluster.namespace, sorted(result.get("items") or [], key=render.sort_key)

    ns, items = _run(state, fetch)
    if output == "json":
        click.echo(render.to_json(render.as_list([render.with_kind(i) for i in items])))
    elif output == "yaml":
        click.echo(render.to_yaml(render.as_list([render.with_kind(i) for i in items])))
    elif output == "name":
        for item in items:
            click.echo(f"polecat.gastown.gastown.io/{(item.get('metadata') or {}).get('name', '')}")
    elif not items:
        where = "any namespace" if all_namespaces else f"namespace {ns}"
        click.echo(f"No Polecats found in {where}.", err=True)
    else:
        lines = render.list_table(
            items, now=datetime.now(UTC), wide=output == "wide", all_namespaces=all_namespaces
        )
        click.echo("\n".join(lines))


# --------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@click.argument("name")
@click.pass_obj
def describe(
    state: State, /, *, kubeconfig: Path | None, context: str | None, namespace: str | None, name: str
) -> None:
    """Show a Polecat: spec, status, conditions, recent Events, and how to see its work.

    For a Polecat that failed or is stuck, the Status Message says what to fix.
    """
    from gastown.cli import render, workload  # noqa: PLC0415
    from gastown.cli.kubeclient import connect  # noqa: PLC0415

    options = state.merged(kubeconfig, context, namespace)

    async def fetch() -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
        async with connect(options) as cluster:
            obj = await cluster.get_polecat(cluster.namespace, name)
            meta = obj.get("metadata") or {}
            events: list[dict[str, Any]] = []
            problem: str | None = None
            try:
                events = await cluster.events_about(
                    cluster.namespace, kind="Polecat", name=name, uid=str(meta.get("uid") or "") or None
                )
                pod = ((obj.get("status") or {}).get("kubernetes") or {}).get("podName")
                if pod:
                    events += await cluster.events_about(
                        cluster.namespace, kind="Pod", name=str(pod), uid=None
                    )
            except CLIError as exc:  # e.g. no RBAC on events: still describe the Polecat
                problem = exc.message
            return obj, events, problem

    obj, events, problem = _run(state, fetch)
    hints: list[tuple[str, str]] = []
    polecat = None
    with contextlib.suppress(CLIError):  # an odd object is still described, without hints
        polecat = workload.parse_polecat(obj)
    if polecat is not None:
        hints = workload.hint_commands(
            polecat, invoked_as=workload.command_name(sys.argv[0]), kubectl_flags=options.kubectl_flags()
        )
    text = render.describe(obj, events, now=datetime.now(UTC), hints=hints)
    click.echo(text)
    if problem:
        click.echo(f"gastown: events not shown: {problem}", err=True)


# --------------------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@ssh_options
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the work ends (Ctrl-C to stop).")
@click.option(
    "-c",
    "--container",
    default="agent",
    show_default=True,
    help="Kubernetes mode: the container (agent, or git-clone for the clone step).",
)
@click.pass_obj
def logs(
    state: State,
    /,
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    name: str,
    follow: bool,
    container: str,
    **ssh_flags: Any,
) -> None:
    """Print the agent's output: the Pod's log (kubernetes) or the tmux pane (local).

    Local mode reads the pane over SSH like the operator does; give the SSH key and
    known_hosts with --ssh-key/--known-hosts (or GASTOWN_SSH_* variables).
    """
    from gastown.cli import workload  # noqa: PLC0415
    from gastown.cli.kubeclient import connect  # noqa: PLC0415

    options = state.merged(kubeconfig, context, namespace)
    ssh = _ssh(ssh_flags)

    def emit(line: str) -> None:
        click.echo(line)

    async def stream() -> None:
        async with connect(options) as cluster:
            polecat = workload.parse_polecat(await cluster.get_polecat(cluster.namespace, name))
            if workload.mode_of(polecat).value == "kubernetes":
                await _kubernetes_logs(cluster, polecat, container=container, follow=follow, emit=emit)
                return
        await _local_logs(polecat, workload.local_settings(polecat, ssh), follow=follow, emit=emit)

    _run(state, stream)


async def _kubernetes_logs(
    cluster: Any, polecat: Any, *, container: str, follow: bool, emit: Callable[[str], None]
) -> None:
    """The Pod's log through the operator's own KubernetesExecutor, its failures said plainly."""
    from gastown.cli import workload  # noqa: PLC0415
    from gastown.cli.kubeclient import log_error  # noqa: PLC0415

    pod = workload.pod_of(polecat)
    what = f'Pod "{pod}" in namespace "{polecat.metadata.namespace}"'

    def explain(exc: Exception) -> Exception:
        # The executor's typed error carries the request's own failure as its cause.
        return log_error(cluster.error(exc.__cause__ or exc, what=what), pod)

    lines = workload.kubernetes_executor(cluster.kube).logs(polecat, follow=follow, container=container)
    await _emit_lines(lines, emit, explain)


async def _local_logs(polecat: Any, settings: Any, *, follow: bool, emit: Callable[[str], None]) -> None:
    """The tmux pane through the operator's own LocalExecutor (SSH + tmux capture-pane)."""
    from gastown.executors.local.executor import LocalExecutor  # noqa: PLC0415

    executor = LocalExecutor(settings)
    try:
        await _emit_lines(executor.logs(polecat, follow=follow), emit, from_exception)
    finally:
        await executor.aclose()


async def _emit_lines(
    lines: AsyncIterator[str], emit: Callable[[str], None], explain: Callable[[Exception], Exception]
) -> None:
    """Print an executor's log lines; its failures (not emit's) become ``explain``'s CLI error."""
    try:
        while True:
            try:
                line = await anext(lines)
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise explain(exc) from exc
            emit(line)
    finally:
        close = getattr(lines, "aclose", None)  # an async generator: stop its request now
        if close is not None:
            await close()


# --------------------------------------------------------------------------------------
# attach
# --------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@ssh_options
@click.argument("name")
@click.option("--print", "print_only", is_flag=True, help="Print the command instead of running it.")
@click.option(
    "--shell",
    default=None,
    help="Kubernetes mode: run this shell with `kubectl exec -it` instead of `kubectl attach -it`.",
)
@click.pass_obj
def attach(
    state: State,
    /,
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    name: str,
    print_only: bool,
    shell: str | None,
    **ssh_flags: Any,
) -> None:
    """Attach to the running agent: ssh + tmux attach (local), kubectl attach/exec (kubernetes).

    Detach from tmux with Ctrl-b d; the agent keeps running.
    """
    from gastown.cli import workload  # noqa: PLC0415
    from gastown.cli.kubeclient import connect  # noqa: PLC0415

    options = state.merged(kubeconfig, context, namespace)
    ssh = _ssh(ssh_flags)

    async def build() -> list[str]:
        async with connect(options) as cluster:
            polecat = workload.parse_polecat(await cluster.get_polecat(cluster.namespace, name))
            if workload.mode_of(polecat).value == "kubernetes":
                argv = workload.kubernetes_executor(cluster.kube).attach_command(polecat, shell=shell)
                return workload.with_kubectl_flags(argv, options.kubectl_flags())
        settings = workload.local_settings(polecat, ssh)
        from gastown.executors.local.executor import LocalExecutor  # noqa: PLC0415

        executor = LocalExecutor(settings)
        try:
            base = executor.attach_command(polecat)
        except Exception as exc:
            raise from_exception(exc) from exc
        finally:
            await executor.aclose()
        return workload.local_attach_argv(base, settings.ssh)

    argv = _run(state, build)
    if print_only:
        click.echo(shlex.join(argv))
        return
    if shutil.which(argv[0]) is None:
        _fail(f"{argv[0]} is not on PATH; the command is: {shlex.join(argv)}", ExitCode.FAILED)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


# --------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    required=True,
    type=click.Path(allow_dash=True),
    help="Manifest file or directory (YAML or JSON, multi-document; '-' for stdin). Repeatable.",
)
@click.option(
    "--local-mode/--no-local-mode",
    default=None,
    help="Whether the operator install has local mode enabled (default: assumed enabled unless "
    "GASTOWN_SSH_HOST says otherwise).",
)
@click.option(
    "--town-root",
    default=None,
    help="The operator's default Gas Town town root; '' for none (default: GASTOWN_TOWN_ROOT, else "
    "assumed set).",
)
@click.pass_obj
def validate(
    state: State, /, *, filenames: tuple[str, ...], local_mode: bool | None, town_root: str | None
) -> None:
    """Check Polecat, Rig and Convoy manifests with the admission webhook's own rules, offline.

    Prints each problem on its own line as FILE: OBJECT: FIELD: PROBLEM and exits 1 if
    any object is invalid. Other kinds in the file are skipped. Checks that depend on
    the operator's install (is local mode enabled, is there a default town root) assume
    a permissive install unless --no-local-mode / --town-root / GASTOWN_* say otherwise.
    """
    from gastown.cli.validation import validate_files  # noqa: PLC0415

    try:
        report = validate_files(list(filenames), local_mode=local_mode, town_root=town_root)
    except CLIError as exc:
        _fail(exc.message, exc.code)
    for line in report.lines:
        click.echo(line)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    if not report.ok:
        sys.exit(int(ExitCode.FAILED))


# --------------------------------------------------------------------------------------
# sling
# --------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@click.argument("bead")
@click.argument("rig")
@click.option(
    "--mode",
    type=click.Choice(["local", "kubernetes"]),
    help="Where the agent runs (default: the Rig's, else local).",
)
@click.option("--name", help="Polecat name (default: generated from the rig and bead).")
@click.option("--task", help="Instructions for the agent.")
@click.option("--task-file", type=click.File("r"), help="Read the instructions from a file ('-' for stdin).")
@click.option("--agent", help="Which agent runs the work (default claude-code).")
@click.option("--label", "labels", multiple=True, help="Label KEY=VALUE on the Polecat. Repeatable.")
@click.option("--repo", help="kubernetes: git repository to clone (git@host:path, ssh:// or https://).")
@click.option("--branch", help="kubernetes: branch to clone (default main).")
@click.option("--work-branch", help="kubernetes: branch results are pushed to (default polecat/<name>).")
@click.option("--git-secret", help="kubernetes: kubernetes.io/ssh-auth Secret for clone and push.")
@click.option("--agent-secret", help="kubernetes: Secret with the agent's API key, NAME or NAME:KEY.")
@click.option("--known-hosts-configmap", help="kubernetes: ConfigMap whose known_hosts lists the git host.")
@click.option("--image", help="kubernetes: agent image (default: the operator's).")
@click.option(
    "--dispatcher", type=click.Choice(["gt", "tmux"]), help="local: gt sling, or a plain tmux session."
)
@click.option("--command", "command_line", help="local (tmux dispatcher): command the session runs.")
@click.option("--town-root", help="local (gt dispatcher): Gas Town town root on the host.")
@click.option("--work-dir", help="local (tmux dispatcher): working directory of the session.")
@click.option("--dry-run", is_flag=True, help="Print the Polecat as YAML instead of creating it.")
@click.option("--wait", is_flag=True, help="Show progress until Done (exit 0) or Failed (exit 1).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="With --wait: give up after this many seconds (exit 6).",
)
@click.pass_obj
def sling(
    state: State,
    /,
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    bead: str,
    rig: str,
    mode: str | None,
    name: str | None,
    task: str | None,
    task_file: Any,
    agent: str | None,
    labels: tuple[str, ...],
    command_line: str | None,
    dry_run: bool,
    wait: bool,
    timeout: float | None,
    **mode_flags: Any,
) -> None:
    """Give bead BEAD of rig RIG to a new Polecat (creates the Polecat).

    Without --mode, kubernetes-only flags (--repo, ...) imply kubernetes mode and local-only
    flags local mode; with neither, the mode is left to the rig's Rig (local without one),
    and so is whatever else the Rig supplies (e.g. --repo).
    With --wait, shows the Polecat's progress until it is Done or Failed.
    """
    from gastown.cli import render  # noqa: PLC0415
    from gastown.cli.manifest import ManifestError, SlingRequest, build_polecat  # noqa: PLC0415

    if task is not None and task_file is not None:
        raise click.UsageError("give --task or --task-file, not both")
    from gastown.cli.fleet_manifest import parse_labels  # noqa: PLC0415

    try:
        label_map = parse_labels(labels)
    except ManifestError as exc:
        raise click.UsageError(str(exc)) from exc
    request = SlingRequest(
        bead=bead,
        rig=rig,
        mode=mode,
        name=name,
        task=task_file.read() if task_file is not None else task,
        agent=agent,
        labels=label_map,
        command=command_line,
        **mode_flags,
    )
    try:
        body = build_polecat(request)
    except ManifestError as exc:
        raise click.UsageError(str(exc)) from exc
    if dry_run:
        click.echo(render.to_yaml(body))
        return
    options = state.merged(kubeconfig, context, namespace)
    final = _run(state, lambda: _sling(options, body, wait=wait, timeout=timeout))
    if final is None:
        return
    meta = final.get("metadata") or {}
    phase = render.phase_of(final)
    ready = render.condition(final, "Ready") or {}
    message = str(ready.get("message") or "")
    if phase == "Done":
        click.echo(f"polecat/{meta.get('name')} is Done{': ' + message if message else ''}")
        return
    reason = str(ready.get("reason") or phase)
    _fail(f"polecat/{meta.get('name')} {phase} ({reason}): {message}", ExitCode.FAILED)


async def _sling(
    options: ClusterOptions, body: dict[str, Any], *, wait: bool, timeout: float | None
) -> dict[str, Any] | None:
    from gastown.cli.kubeclient import connect  # noqa: PLC0415
    from gastown.cli.progress import LineView, LiveView, ProgressView, wait_for_polecat  # noqa: PLC0415

    async with connect(options) as cluster:
        created = await cluster.create_polecat(cluster.namespace, body)
        meta = created.get("metadata") or {}
        click.echo(
            f"polecat.gastown.gastown.io/{meta.get('name')} created in namespace {meta.get('namespace')}"
        )
        if not wait:
            return None
        view: ProgressView
        if sys.stdout.isatty():
            from rich.console import Console  # noqa: PLC0415

            view = LiveView(Console(), f"polecat/{meta.get('name')}")
        else:
            view = LineView(click.echo)
        try:
            return await wait_for_polecat(cluster, created, view, timeout=timeout)
        finally:
            view.close()


# --------------------------------------------------------------------------------------
# convoy, rig (gastown.cli.fleet; imported last: it builds on the helpers above)
# --------------------------------------------------------------------------------------
from gastown.cli import fleet as _fleet  # noqa: E402

for _command in _fleet.commands():
    main.add_command(_command)
