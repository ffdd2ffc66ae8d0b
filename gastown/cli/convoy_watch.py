"""``convoy watch`` (and ``convoy create --watch``): follow Convoys until they are Complete.

:func:`watch_convoys` lists the namespace's Convoys once (to learn which exist and the
resourceVersion), then holds a real watch from that resourceVersion (kubernetes_asyncio
through :class:`gastown.kube.KubeClient`, with bookmarks), so every status the
operator writes is seen without polling. When the server ends the watch or answers
410 Gone it lists again and watches from there; a short apiserver outage is ridden out
with backoff, as ``sling --wait`` does.

It returns the watched Convoys as last seen once every one is Complete (the Complete
condition True). The command turns them into an exit code: 0 when every bead of every
watched Convoy is Done, 1 otherwise (some bead Failed or Terminated, or the failure
policy stopped the Convoy), 6 on ``--timeout``, 3 when a named Convoy does not exist,
1 when a watched Convoy is deleted meanwhile.

Two views show the progress. :class:`LiveView` (terminals) is a rich live table: one
bar per Convoy with its counts by phase, and its failures with their reasons under it.
:class:`LineView` (pipes, CI logs) prints a line when a Convoy's counts change and one
per newly failed bead, which reads well in a log and can be grepped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gastown.cli.errors import CLIError, ExitCode
from gastown.cli.fleet_render import (
    bead_rows,
    counts_of,
    counts_text,
    finished_count,
    is_complete,
    state_of,
    total_of,
)
from gastown.cli.kubeclient import CONVOYS
from gastown.cli.progress import RECONNECT_BACKOFF, RECONNECT_BUDGET
from gastown.cli.render import human_duration

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from gastown.cli.kubeclient import Cluster

BAD_PHASES = ("Failed", "Terminated", "Stuck")
# Failures listed under each Convoy's bar in the live view; the rest are counted.
LIVE_FAILURES = 5


class ConvoyView(Protocol):
    """Shows the watched Convoys as they change (``convoys`` keeps the watched order)."""

    def update(self, convoys: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def failures(obj: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(bead, polecat, phase, reason) of every bead Failed, Terminated or Stuck, in spec order."""
    out = []
    for bead in bead_rows(obj):
        phase = str(bead.get("phase") or "")
        if phase in BAD_PHASES:
            out.append(
                (
                    str(bead.get("beadID") or ""),
                    str(bead.get("polecat") or ""),
                    phase,
                    str(bead.get("reason") or ""),
                )
            )
    return out


def failure_text(failure: tuple[str, str, str, str]) -> str:
    """``bead gt-3 (polecat batch-3) Failed: CloneFailed``."""
    bead, polecat, phase, reason = failure
    who = f"bead {bead}" + (f" (polecat {polecat})" if polecat else "")
    return f"{who} {phase}" + (f": {reason}" if reason else "")


def summary(obj: dict[str, Any]) -> str:
    """One line for a Convoy: ``12/20 finished (8 done, 2 failed, ...) Running``."""
    return f"{finished_count(obj)}/{total_of(obj)} finished ({counts_text(counts_of(obj))}) {state_of(obj)}"


class LineView:
    """A line per change: ``[  12s] convoy/batch  3/10 finished (2 done, 1 failed, 7 pending) Running``."""

    def __init__(self, echo: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._echo = echo
        self._clock = clock
        self._started = clock()
        self._last: dict[str, str] = {}
        self._reported: set[tuple[str, str, str, str, str]] = set()

    def update(self, convoys: Sequence[dict[str, Any]]) -> None:
        elapsed = f"[{human_duration(self._clock() - self._started):>5}]"
        for obj in convoys:
            name = _name(obj)
            for failure in failures(obj):
                key = (name, *failure)
                if key not in self._reported:
                    self._reported.add(key)
                    self._echo(f"{elapsed} convoy/{name}  {failure_text(failure)}")
            line = summary(obj)
            if self._last.get(name) != line:
                self._last[name] = line
                self._echo(f"{elapsed} convoy/{name}  {line}")

    def close(self) -> None:
        return None


class _Board:
    """The live renderable: recomputed on every refresh so the clock ticks."""

    def __init__(self, title: str, clock: Callable[[], float]) -> None:
        self.title = title
        self.clock = clock
        self.started = clock()
        self.convoys: list[dict[str, Any]] = []

    def __rich__(self) -> RenderableType:
        from rich.console import Group  # noqa: PLC0415
        from rich.progress_bar import ProgressBar  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        elapsed = human_duration(self.clock() - self.started)
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(width=30)
        grid.add_column(no_wrap=True, justify="right")
        grid.add_column()
        for obj in self.convoys:
            state = state_of(obj)
            style = {"Complete": "green", "Failed": "bold red"}.get(state, "cyan")
            total = total_of(obj)
            bar = ProgressBar(
                total=max(total, 1),
                completed=finished_count(obj),
                width=30,
                complete_style="red" if counts_of(obj)["failed"] else "green",
                finished_style="green" if state == "Complete" else "red",
            )
            grid.add_row(
                Text(f"convoy/{_name(obj)}", style="bold"),
                bar,
                Text(f"{finished_count(obj)}/{total}"),
                Text.assemble((counts_text(counts_of(obj)), ""), "  ", (state, style)),
            )
            found = failures(obj)
            for bead, polecat, phase, reason in found[:LIVE_FAILURES]:
                mark = "!" if phase == "Stuck" else "✗"
                why = f"{phase}: {reason}" if reason else phase
                where = f" (polecat {polecat})" if polecat else ""
                grid.add_row(
                    Text(f"  {mark} {bead}", style="red"), "", "", Text(f"{why}{where}", style="red")
                )
            if len(found) > LIVE_FAILURES:
                grid.add_row(Text(f"  ... {len(found) - LIVE_FAILURES} more", style="red"), "", "", "")
        return Group(Text.assemble((self.title, "bold"), f"  {elapsed}"), grid)


class LiveView:
    """A rich Live board (terminals only)."""

    def __init__(self, console: Console, title: str, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.live import Live  # noqa: PLC0415

        self.board = _Board(title, clock)
        self._live: Live = Live(self.board, console=console, refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, convoys: Sequence[dict[str, Any]]) -> None:
        self.board.convoys = list(convoys)
        self._live.refresh()

    def close(self) -> None:
        self._live.stop()


def _rv(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class _Watched:
    """The watched Convoys by name, in the order they were asked for."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.objects: dict[str, dict[str, Any]] = {}

    def ordered(self) -> list[dict[str, Any]]:
        return [self.objects[n] for n in self.names if n in self.objects]

    def all_complete(self) -> bool:
        return all(n in self.objects and is_complete(self.objects[n]) for n in self.names)


async def _list(cluster: Cluster, namespace: str) -> tuple[dict[str, dict[str, Any]], str]:
    result = await cluster.list_objects(CONVOYS, namespace)
    items = {_name(item): item for item in result.get("items") or []}
    return items, str((result.get("metadata") or {}).get("resourceVersion") or "")


async def watch_convoys(
    cluster: Cluster,
    namespace: str,
    names: Sequence[str],
    view: ConvoyView,
    *,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Follow the named Convoys (none named: every Convoy now in the namespace) until Complete.

    Returns them as last seen ([] when none is named and the namespace has none).
    """
    listed, resource_version = await _list(cluster, namespace)
    wanted = list(dict.fromkeys(names)) or sorted(listed)
    missing = [n for n in wanted if n not in listed]
    if missing:
        raise CLIError(f"{CONVOYS.label(namespace, missing[0])} not found", ExitCode.NOT_FOUND)
    watched = _Watched(wanted)
    watched.objects = {n: listed[n] for n in wanted}
    view.update(watched.ordered())
    if not wanted or watched.all_complete():
        return watched.ordered()
    try:
        async with asyncio.timeout(timeout):
            await _follow(cluster, namespace, watched, resource_version, view)
    except TimeoutError as exc:
        running = [f"convoy/{_name(o)} {summary(o)}" for o in watched.ordered() if not is_complete(o)]
        raise CLIError(
            f"gave up waiting after {human_duration(timeout or 0)}: {'; '.join(running)}", ExitCode.TIMEOUT
        ) from exc
    return watched.ordered()


async def _follow(
    cluster: Cluster, namespace: str, watched: _Watched, resource_version: str, view: ConvoyView
) -> None:
    single = watched.names[0] if len(watched.names) == 1 else None
    failing_since: float | None = None
    backoff = RECONNECT_BACKOFF.state()
    while True:
        try:
            async for kind, item in cluster.watch_objects(CONVOYS, namespace, resource_version, name=single):
                if kind == "ERROR":
                    break  # e.g. 410 Gone: list again below and watch from there
                resource_version = _rv(item) or resource_version
                name = _name(item)
                if kind == "BOOKMARK" or name not in watched.names:
                    continue
                if kind == "DELETED":
                    raise CLIError(f"convoy/{name} was deleted while watching it", ExitCode.FAILED)
                watched.objects[name] = item
                view.update(watched.ordered())
                if watched.all_complete():
                    return
                failing_since = None
                backoff.reset()
            listed, resource_version = await _list(cluster, namespace)
            gone = [n for n in watched.names if n not in listed]
            if gone:
                raise CLIError(f"convoy/{gone[0]} was deleted while watching it", ExitCode.FAILED)
            watched.objects = {n: listed[n] for n in watched.names}
            failing_since = None
            backoff.reset()
            view.update(watched.ordered())
            if watched.all_complete():
                return
        except CLIError as exc:
            if exc.code is not ExitCode.UNREACHABLE:
                raise
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > RECONNECT_BUDGET:
                raise
            await asyncio.sleep(backoff.next_delay())


def outcome(convoys: Sequence[dict[str, Any]]) -> tuple[list[str], str | None]:
    """(summary lines for stdout, the one-line failure or None) once the watch has ended."""
    lines = []
    bad = []
    for obj in convoys:
        state = state_of(obj)
        lines.append(f"convoy/{_name(obj)} {state}: {counts_text(counts_of(obj))} (of {total_of(obj)})")
        if state != "Complete":
            bad.append(obj)
    if not bad:
        return lines, None
    named = ", ".join(
        f"convoy/{_name(o)} ({total_of(o) - counts_of(o)['done']} of {total_of(o)} beads not Done)"
        for o in bad
    )
    return lines, f"{len(bad)} of {len(convoys)} Convoys did not finish every bead: {named}"
