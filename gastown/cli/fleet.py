"""``gastown convoy ...`` and ``gastown rig ...``: the user's commands for batches and rigs.

Thin click functions, as in :mod:`gastown.cli.user` (same flags, same one-line errors
and exit codes): ``fleet_manifest`` builds the objects, ``fleet_render`` formats them,
``convoy_watch`` follows Convoys, ``kubeclient`` talks to the cluster. Objects are
checked with the webhook's own rules (:mod:`gastown.webhook.kinds`) before they are
sent, so a bad field is reported with the webhook's message without a round trip.

``rig create`` has both forms: flags for the common case (one mode's defaults and a
capacity, which is what a rig mostly is) and ``-f FILE`` for everything else
(resources, scheduling, defaults for both modes), because a Rig's full spec is as large
as a Polecat's and flags for all of it would be a second, worse schema.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from gastown.api.models import API_VERSION, GROUP
from gastown.cli.errors import EXIT_CODES_HELP, CLIError, ExitCode
from gastown.cli.kubeclient import CONVOYS, RIGS, ClusterOptions, Resource
from gastown.cli.user import CONTEXT_SETTINGS, State, _fail, _run, cluster_options

OUTPUTS = click.Choice(["table", "wide", "json", "yaml", "name"])
WATCH_EXIT_HELP = (
    "Exit codes: 0 every bead of every watched Convoy is Done; 1 a watched Convoy completed with "
    "beads not Done (Failed, Terminated, or never started after its failure policy stopped it) or "
    "was deleted; 3 a named Convoy does not exist; 4 cannot reach the cluster; 6 gave up (--timeout)."
)


# --------------------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------------------
def _print_objects(
    items: list[dict[str, Any]],
    *,
    resource: Resource,
    output: str,
    table: Callable[[], list[str]],
    where: str,
) -> None:
    from gastown.cli import render  # noqa: PLC0415

    def with_kind(obj: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": obj.get("apiVersion") or API_VERSION, "kind": resource.kind, **obj}

    if output == "json":
        click.echo(render.to_json(render.as_list([with_kind(i) for i in items])))
    elif output == "yaml":
        click.echo(render.to_yaml(render.as_list([with_kind(i) for i in items])))
    elif output == "name":
        for item in items:
            click.echo(f"{resource.kind.lower()}.{GROUP}/{item['metadata']['name']}")
    elif not items:
        click.echo(f"No {resource.kind}s found in {where}.", err=True)
    else:
        click.echo("\n".join(table()))


async def _list(
    options: ClusterOptions, resource: Resource, *, all_namespaces: bool, selector: str | None
) -> tuple[str, list[dict[str, Any]]]:
    from gastown.cli import render  # noqa: PLC0415
    from gastown.cli.kubeclient import connect  # noqa: PLC0415

    async with connect(options) as cluster:
        target = None if all_namespaces else cluster.namespace
        result = await cluster.list_objects(resource, target, selector=selector)
        return cluster.namespace, sorted(result.get("items") or [], key=render.sort_key)


def _objects_from_files(filenames: tuple[str, ...], kind: str) -> list[dict[str, Any]]:
    """The ``kind`` objects of the files, each checked with the webhook's rules.

    Problems are printed one per line (as ``validate`` prints them) and nothing is
    created (exit 1). Other kinds in the files are a usage error: ``convoy create -f``
    creates Convoys only (``kubectl apply -f`` is the tool for mixed files).
    """
    try:
        return _read_objects(filenames, kind)
    except CLIError as exc:
        _fail(exc.message, exc.code)


def _read_objects(filenames: tuple[str, ...], kind: str) -> list[dict[str, Any]]:
    from gastown.cli.manifest import ManifestError, read_documents  # noqa: PLC0415
    from gastown.cli.validation import _read, expand, offline_settings, validate_document  # noqa: PLC0415

    settings = offline_settings(local_mode=None, town_root=None)
    objects: list[dict[str, Any]] = []
    problems: list[str] = []
    for name in expand(list(filenames)):
        shown = "<stdin>" if name == "-" else name
        try:
            documents = read_documents(_read(name))
        except ManifestError as exc:
            raise CLIError(f"{shown}: {exc}", ExitCode.FAILED) from exc
        for doc in documents:
            if doc.kind != kind:
                raise CLIError(
                    f"{shown}: {doc.label}: not a {kind}; this command creates {kind}s only "
                    "(use kubectl apply -f for other kinds)",
                    ExitCode.USAGE,
                )
            errors, _ = validate_document(doc, settings)
            problems += [f"{shown}: {doc.label}: {error}" for error in errors]
            objects.append(doc.obj)
    if problems:
        for line in problems:
            click.echo(line)
        many = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        raise CLIError(f"nothing was created: {many} (above); fix the file and run again", ExitCode.FAILED)
    if not objects:
        raise CLIError(f"{', '.join(filenames)}: no {kind} found", ExitCode.FAILED)
    return objects


def _check(obj: dict[str, Any], kind: str) -> None:
    """A flag-built object through the webhook's rules: flags that make a bad field fail here."""
    from gastown.cli.manifest import Document  # noqa: PLC0415
    from gastown.cli.validation import offline_settings, validate_document  # noqa: PLC0415

    doc = Document(1, obj)
    errors, _ = validate_document(doc, offline_settings(local_mode=None, town_root=None))
    if errors:
        raise click.UsageError(f"the {kind} these flags make is invalid: {'; '.join(errors)}")


async def _create(
    options: ClusterOptions, resource: Resource, bodies: list[dict[str, Any]]
) -> tuple[str, list[dict[str, Any]]]:
    from gastown.cli.kubeclient import connect  # noqa: PLC0415

    created = []
    async with connect(options) as cluster:
        for body in bodies:
            namespace = str((body.get("metadata") or {}).get("namespace") or cluster.namespace)
            obj = await cluster.create_object(resource, namespace, body)
            meta = obj.get("metadata") or {}
            where = meta.get("namespace")
            click.echo(f"{resource.kind.lower()}.{GROUP}/{meta.get('name')} created in namespace {where}")
            created.append(obj)
        return cluster.namespace, created


# --------------------------------------------------------------------------------------
# convoy
# --------------------------------------------------------------------------------------
@click.group(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
def convoy() -> None:
    """Convoys: a batch of beads, each worked on by its own Polecat.

    \b
    Examples:
      gastown convoy create batch-1 --rig gastown --bead gt-abc12="Fix the login bug" \\
          --bead gt-def34="Add rate limiting" --parallelism 2 --watch
      gastown convoy create soak --rig gastown --count 50 --task "Run the flaky test" \\
          --failure-policy Stop --max-failures 3
      gastown convoy create -f examples/fleet-kubernetes/convoy.yaml
      gastown convoy list
      gastown convoy describe batch-1
      gastown convoy watch batch-1 soak
    """


@convoy.command("create", context_settings=CONTEXT_SETTINGS, epilog=WATCH_EXIT_HELP)
@cluster_options
@click.argument("name", required=False)
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    type=click.Path(allow_dash=True),
    help="Create the Convoys in this file or directory ('-' for stdin) instead of from flags.",
)
@click.option("--rig", help="The rig of every Polecat (its defaults and capacity apply).")
@click.option(
    "--bead",
    "beads",
    multiple=True,
    metavar="ID[=TASK]",
    help="A bead to work on, with its own task after '='. Repeatable; or use --count.",
)
@click.option(
    "--count", type=click.IntRange(min=1), help="Run --task this many times (beads NAME-1 ... NAME-N)."
)
@click.option("--task", help="The task of beads without their own (required with --count).")
@click.option("--task-file", type=click.File("r"), help="Read --task from a file ('-' for stdin).")
@click.option(
    "--mode", type=click.Choice(["local", "kubernetes"]), help="Execution mode (default: the rig's)."
)
@click.option("--agent", help="Which agent runs the work (default: the rig's, else claude-code).")
@click.option(
    "--parallelism",
    type=click.IntRange(min=1),
    help="At most this many Polecats unfinished at once (default 10).",
)
@click.option(
    "--failure-policy",
    type=click.Choice(["Continue", "Stop"]),
    help="Continue: try every bead (default). Stop: start no more after --max-failures failures.",
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=1),
    help="With --failure-policy Stop: failures that stop it (default 1).",
)
@click.option(
    "--ttl",
    type=click.IntRange(min=0),
    help="Seconds after each Polecat finishes before it is deleted (its result stays in the Convoy).",
)
@click.option("--label", "labels", multiple=True, help="Label KEY=VALUE on the Convoy. Repeatable.")
@click.option("--dry-run", is_flag=True, help="Print the Convoy as YAML instead of creating it.")
@click.option("--watch", "watch", is_flag=True, help="Then show its progress until it is Complete.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="With --watch: give up after this many seconds (exit 6).",
)
@click.pass_obj
def convoy_create(
    state: State,
    /,
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    name: str | None,
    filenames: tuple[str, ...],
    rig: str | None,
    beads: tuple[str, ...],
    count: int | None,
    task: str | None,
    task_file: Any,
    mode: str | None,
    agent: str | None,
    parallelism: int | None,
    failure_policy: str | None,
    max_failures: int | None,
    ttl: int | None,
    labels: tuple[str, ...],
    dry_run: bool,
    watch: bool,
    timeout: float | None,
) -> None:
    """Create a Convoy NAME from flags, or the Convoys of a file with -f.

    The quick form needs --rig and the beads: --bead ID[=TASK] (repeatable) or --count N
    with --task. The Convoy creates one Polecat per bead, named NAME-1, NAME-2, ...
    With --watch, shows the progress as `convoy watch` does and exits as it does.
    """
    from gastown.cli import render  # noqa: PLC0415
    from gastown.cli.fleet_manifest import ConvoyRequest, build_convoy, parse_labels  # noqa: PLC0415
    from gastown.cli.manifest import ManifestError  # noqa: PLC0415

    if task is not None and task_file is not None:
        raise click.UsageError("give --task or --task-file, not both")
    quick = {
        "NAME": name,
        "--rig": rig,
        "--bead": beads or None,
        "--count": count,
        "--task": task,
        "--task-file": task_file,
        "--mode": mode,
        "--agent": agent,
        "--parallelism": parallelism,
        "--failure-policy": failure_policy,
        "--max-failures": max_failures,
        "--ttl": ttl,
        "--label": labels or None,
    }
    if filenames:
        given = [flag for flag, value in quick.items() if value is not None]
        if given:
            raise click.UsageError(f"-f creates the Convoys as the file says; leave out {', '.join(given)}")
        bodies = _objects_from_files(filenames, "Convoy")
    else:
        if not name:
            raise click.UsageError("give the Convoy's NAME (or -f FILE)")
        if not rig:
            raise click.UsageError("give --rig: the rig every Polecat of the Convoy belongs to")
        try:
            body = build_convoy(
                ConvoyRequest(
                    name=name,
                    rig=rig,
                    beads=list(beads),
                    count=count,
                    task=task_file.read() if task_file is not None else task,
                    mode=mode,
                    agent=agent,
                    parallelism=parallelism,
                    failure_policy=failure_policy,
                    max_failures=max_failures,
                    ttl=ttl,
                    labels=parse_labels(labels),
                )
            )
        except ManifestError as exc:
            raise click.UsageError(str(exc)) from exc
        _check(body, "Convoy")
        bodies = [body]
    if dry_run:
        click.echo("\n---\n".join(render.to_yaml(b) for b in bodies))
        return
    options = state.merged(kubeconfig, context, namespace)
    if not watch:
        _run(state, lambda: _create(options, CONVOYS, bodies))
        return

    async def create_and_watch() -> list[dict[str, Any]]:
        _, created = await _create(options, CONVOYS, bodies)
        spaces = {str(o["metadata"]["namespace"]) for o in created}
        if len(spaces) != 1:
            raise CLIError("--watch follows Convoys of one namespace; these are in several", ExitCode.USAGE)
        _, convoys = await _watch(
            options, spaces.pop(), [str(o["metadata"]["name"]) for o in created], timeout
        )
        return convoys

    _finish_watch(_run(state, create_and_watch))


@convoy.command("list", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@click.option("-A", "--all-namespaces", is_flag=True, help="List Convoys in every namespace.")
@click.option("-l", "--selector", help="Label selector, e.g. team=core.")
@click.option("-o", "--output", type=OUTPUTS, default="table", show_default=True, help="Output format.")
@click.pass_obj
def convoy_list(
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
    """List Convoys: NAME, RIG, DONE (of total), WORKING, PENDING, FAILED, STATE, AGE.

    STATE is Pending (no status yet), Running, Complete (every bead Done) or Failed
    (Complete with beads not Done).
    """
    from gastown.cli.fleet_render import convoy_table  # noqa: PLC0415

    options = state.merged(kubeconfig, context, namespace)
    ns, items = _run(state, lambda: _list(options, CONVOYS, all_namespaces=all_namespaces, selector=selector))
    _print_objects(
        items,
        resource=CONVOYS,
        output=output,
        table=lambda: convoy_table(
            items, now=datetime.now(UTC), wide=output == "wide", all_namespaces=all_namespaces
        ),
        where="any namespace" if all_namespaces else f"namespace {ns}",
    )


@convoy.command("describe", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@click.argument("name")
@click.pass_obj
def convoy_describe(
    state: State, /, *, kubeconfig: Path | None, context: str | None, namespace: str | None, name: str
) -> None:
    """Show a Convoy: its spec, counts and times, each bead's Polecat, phase, branch and
    reason, its conditions and recent Events."""
    from gastown.cli.fleet_render import describe_convoy  # noqa: PLC0415

    options = state.merged(kubeconfig, context, namespace)
    obj, _, events, problem = _run(state, lambda: _get_with_events(options, CONVOYS, name))
    click.echo(describe_convoy(obj, events, now=datetime.now(UTC)))
    if problem:
        click.echo(f"gastown: events not shown: {problem}", err=True)


async def _get_with_events(
    options: ClusterOptions, resource: Resource, name: str, *, polecats: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """(the object, Events about it, with ``polecats`` the namespace's Polecats of that rig, problem)."""
    from gastown.cli.fleet_render import rig_of  # noqa: PLC0415
    from gastown.cli.kubeclient import connect  # noqa: PLC0415

    async with connect(options) as cluster:
        obj = await cluster.get_object(resource, cluster.namespace, name)
        events: list[dict[str, Any]] = []
        problem = None
        try:
            uid = str((obj.get("metadata") or {}).get("uid") or "") or None
            events = await cluster.events_about(cluster.namespace, kind=resource.kind, name=name, uid=uid)
        except CLIError as exc:  # e.g. no RBAC on events: still describe the object
            problem = exc.message
        members: list[dict[str, Any]] = []
        if polecats:
            listed = await cluster.list_polecats(cluster.namespace)
            members = [p for p in listed.get("items") or [] if rig_of(p) == name]
        return obj, members, events, problem


@convoy.command("watch", context_settings=CONTEXT_SETTINGS, epilog=WATCH_EXIT_HELP)
@cluster_options
@click.argument("names", nargs=-1)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Give up after this many seconds (exit 6).",
)
@click.pass_obj
def convoy_watch(
    state: State,
    /,
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    names: tuple[str, ...],
    timeout: float | None,
) -> None:
    """Show the progress of Convoys NAMES (default: every Convoy in the namespace) until
    each is Complete: a bar per Convoy, counts by phase, failures with their reasons.

    On a terminal the display updates in place; otherwise (pipes, CI logs) it prints a
    line whenever a Convoy's counts change and one per failed bead. It ends with one
    summary line per Convoy.
    """
    options = state.merged(kubeconfig, context, namespace)
    ns, convoys = _run(state, lambda: _watch(options, None, list(names), timeout))
    if not convoys:
        click.echo(f"No Convoys found in namespace {ns}.", err=True)
        return
    _finish_watch(convoys)


async def _watch(
    options: ClusterOptions, namespace: str | None, names: list[str], timeout: float | None
) -> tuple[str, list[dict[str, Any]]]:
    """(the namespace, the Convoys as last seen); ``namespace`` None: the default one."""
    from gastown.cli.convoy_watch import ConvoyView, LineView, LiveView, watch_convoys  # noqa: PLC0415
    from gastown.cli.kubeclient import connect  # noqa: PLC0415

    async with connect(options) as cluster:
        namespace = namespace or cluster.namespace
        view: ConvoyView
        if sys.stdout.isatty():
            from rich.console import Console  # noqa: PLC0415

            view = LiveView(Console(), f"Convoys in namespace {namespace}")
        else:
            view = LineView(click.echo)
        try:
            return namespace, await watch_convoys(cluster, namespace, names, view, timeout=timeout)
        finally:
            view.close()


def _finish_watch(convoys: list[dict[str, Any]]) -> None:
    from gastown.cli.convoy_watch import outcome  # noqa: PLC0415

    lines, failure = outcome(convoys)
    for line in lines:
        click.echo(line)
    if failure:
        _fail(failure, ExitCode.FAILED)


# --------------------------------------------------------------------------------------
# rig
# --------------------------------------------------------------------------------------
@click.group(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
def rig() -> None:
    """Rigs: defaults for a Gas Town rig's Polecats, and how many may run at once.

    \b
    Examples:
      gastown rig create gastown --mode kubernetes --repo git@github.com:me/app.git \\
          --git-secret repo-deploy-key --agent-secret agent-api-key --max-active 5
      gastown rig create scratch --mode local --dispatcher tmux --command claude --max-active 2
      gastown rig create -f examples/fleet-local/rig.yaml
      gastown rig list
      gastown rig describe gastown
    """


@rig.command("create", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@click.argument("name", required=False)
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    type=click.Path(allow_dash=True),
    help="Create the Rigs in this file or directory ('-' for stdin) instead of from flags.",
)
@click.option("--mode", type=click.Choice(["local", "kubernetes"]), help="Default execution mode.")
@click.option("--agent", help="Default agent (unset: claude-code).")
@click.option(
    "--max-active", type=click.IntRange(min=0), help="Polecats that may run at once (unset: no limit)."
)
@click.option("--repo", help="kubernetes: repository to clone (git@host:path, ssh:// or https://).")
@click.option("--branch", help="kubernetes: branch to clone (default main).")
@click.option("--git-secret", help="kubernetes: kubernetes.io/ssh-auth Secret for clone and push.")
@click.option("--agent-secret", help="kubernetes: Secret with the agent's API key, NAME or NAME:KEY.")
@click.option("--known-hosts-configmap", help="kubernetes: ConfigMap whose known_hosts lists the git host.")
@click.option("--image", help="kubernetes: agent image (default: the operator's).")
@click.option(
    "--deadline",
    type=click.IntRange(min=1),
    help="Seconds the work may run (the mode's activeDeadlineSeconds).",
)
@click.option(
    "--dispatcher", type=click.Choice(["gt", "tmux"]), help="local: gt sling, or a plain tmux session."
)
@click.option("--command", "command_line", help="local (tmux dispatcher): command the session runs.")
@click.option("--town-root", help="local (gt dispatcher): Gas Town town root on the host.")
@click.option("--work-dir", help="local (tmux dispatcher): working directory of the session.")
@click.option("--label", "labels", multiple=True, help="Label KEY=VALUE on the Rig. Repeatable.")
@click.option("--dry-run", is_flag=True, help="Print the Rig as YAML instead of creating it.")
@click.pass_obj
def rig_create(
    state: State,
    /,
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    name: str | None,
    filenames: tuple[str, ...],
    labels: tuple[str, ...],
    dry_run: bool,
    command_line: str | None,
    **flags: Any,
) -> None:
    """Create Rig NAME from flags (one mode's defaults and a capacity), or the Rigs of a file
    with -f (everything a Rig can hold: resources, scheduling, both modes)."""
    from gastown.cli import render  # noqa: PLC0415
    from gastown.cli.fleet_manifest import RigRequest, build_rig, parse_labels  # noqa: PLC0415
    from gastown.cli.manifest import ManifestError  # noqa: PLC0415

    if filenames:
        given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
        given += (
            ["NAME"] * bool(name) + ["--command"] * (command_line is not None) + ["--label"] * bool(labels)
        )
        if given:
            raise click.UsageError(f"-f creates the Rigs as the file says; leave out {', '.join(given)}")
        bodies = _objects_from_files(filenames, "Rig")
    else:
        if not name:
            raise click.UsageError("give the Rig's NAME (or -f FILE)")
        try:
            body = build_rig(
                RigRequest(name=name, command=command_line, labels=parse_labels(labels), **flags)
            )
        except ManifestError as exc:
            raise click.UsageError(str(exc)) from exc
        _check(body, "Rig")
        bodies = [body]
    if dry_run:
        click.echo("\n---\n".join(render.to_yaml(b) for b in bodies))
        return
    options = state.merged(kubeconfig, context, namespace)
    _run(state, lambda: _create(options, RIGS, bodies))


@rig.command("list", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@click.option("-A", "--all-namespaces", is_flag=True, help="List Rigs in every namespace.")
@click.option("-l", "--selector", help="Label selector, e.g. team=core.")
@click.option(
    "-o", "--output", type=click.Choice(["table", "json", "yaml", "name"]), default="table", show_default=True
)
@click.pass_obj
def rig_list(
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
    """List Rigs: NAME, MODE, MAX (maxActivePolecats), ACTIVE, WAITING, AGE."""
    from gastown.cli.fleet_render import rig_table  # noqa: PLC0415

    options = state.merged(kubeconfig, context, namespace)
    ns, items = _run(state, lambda: _list(options, RIGS, all_namespaces=all_namespaces, selector=selector))
    _print_objects(
        items,
        resource=RIGS,
        output=output,
        table=lambda: rig_table(items, now=datetime.now(UTC), all_namespaces=all_namespaces),
        where="any namespace" if all_namespaces else f"namespace {ns}",
    )


@rig.command("describe", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@cluster_options
@click.argument("name")
@click.pass_obj
def rig_describe(
    state: State, /, *, kubeconfig: Path | None, context: str | None, namespace: str | None, name: str
) -> None:
    """Show a Rig: its defaults, capacity (max, active, waiting), its Polecats by phase,
    conditions and recent Events."""
    from gastown.cli.fleet_render import describe_rig  # noqa: PLC0415

    options = state.merged(kubeconfig, context, namespace)
    obj, polecats, events, problem = _run(state, lambda: _get_with_events(options, RIGS, name, polecats=True))
    click.echo(describe_rig(obj, polecats, events, now=datetime.now(UTC)))
    if problem:
        click.echo(f"gastown: events not shown: {problem}", err=True)


def commands() -> list[click.Command]:
    """The command groups this module adds to ``gastown``."""
    return [convoy, rig]
