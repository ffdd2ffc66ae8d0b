"""``sling --wait``: follow one Polecat until it is Done or Failed, showing where it is.

:func:`wait_for_polecat` watches the Polecat (a field-selected watch from the
resourceVersion ``create`` returned, so no transition is missed), re-reads it when
the watch ends or expires (410), and rides out short apiserver outages with backoff.
It returns the object in its terminal phase; the caller turns the phase into the exit
code.

Two views show the progress. On a terminal, :class:`LiveView` is a rich live panel:
the phase steps (Pending → Dispatching → Working → Done) with a spinner on the
current one, the elapsed time, the Ready condition's message and where the work runs.
Anywhere else (pipes, CI logs, tests) :class:`LineView` prints one line per change,
which reads well in a log and can be grepped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gastown.backoff import Backoff
from gastown.cli.errors import CLIError, ExitCode
from gastown.cli.render import TERMINAL, condition, human_duration, phase_of, workload

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from gastown.cli.kubeclient import Cluster

STEPS = ("Pending", "Dispatching", "Working", "Done")
# How long the watch may fail to connect in a row before waiting is given up (exit 4).
RECONNECT_BUDGET = 60.0
RECONNECT_BACKOFF = Backoff(base=0.5, cap=5.0)


class ProgressView(Protocol):
    """Shows a Polecat as it changes."""

    def update(self, obj: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _summary(obj: dict[str, Any]) -> tuple[str, str, str]:
    ready = condition(obj, "Ready") or {}
    return phase_of(obj), str(ready.get("reason") or ""), str(ready.get("message") or "")


class LineView:
    """One line per change of phase/reason/message: ``[ 12s] Working  Working: The agent is working.``"""

    def __init__(self, echo: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._echo = echo
        self._clock = clock
        self._started = clock()
        self._last: tuple[str, str, str] | None = None
        self._where = ""

    def update(self, obj: dict[str, Any]) -> None:
        current = _summary(obj)
        what, where = workload(obj)
        place = f"{what} on {where}" if what != "<none>" else ""
        if current == self._last and place == self._where:
            return
        self._last, self._where = current, place
        phase, reason, message = current
        elapsed = human_duration(self._clock() - self._started)
        detail = f"{reason}: {message}" if reason and message else (message or reason)
        suffix = f" [{place}]" if place else ""
        self._echo(f"[{elapsed:>5}] {phase:<11} {detail}{suffix}".rstrip())

    def close(self) -> None:
        return None


class _Panel:
    """The live renderable: recomputed on every refresh so the clock ticks."""

    def __init__(self, title: str, clock: Callable[[], float]) -> None:
        self.title = title
        self.clock = clock
        self.started = clock()
        self.obj: dict[str, Any] = {}
        self.furthest = 0  # index in STEPS of the furthest phase seen

    def update(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        phase = phase_of(obj)
        if phase in STEPS:
            self.furthest = max(self.furthest, STEPS.index(phase))

    def __rich__(self) -> RenderableType:
        from rich.console import Group  # noqa: PLC0415
        from rich.spinner import Spinner  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        phase, reason, message = _summary(self.obj) if self.obj else ("Pending", "", "")
        ended = phase in TERMINAL
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=2)
        grid.add_column()
        for index, step in enumerate(STEPS):
            mark: Any
            if step == "Done" and phase in ("Failed", "Terminated"):
                mark, label, style = Text("✗", style="bold red"), phase, "bold red"
            elif index < self.furthest or (ended and index == self.furthest):
                mark, label, style = Text("✓", style="green"), step, "green"
            elif index == self.furthest and phase == "Stuck":
                mark, label, style = Text("!", style="bold yellow"), f"{step} (Stuck)", "bold yellow"
            elif index == self.furthest and not ended:
                mark, label, style = Spinner("dots", style="cyan"), step, "bold cyan"
            else:
                mark, label, style = Text("·", style="dim"), step, "dim"
            grid.add_row(mark, Text(label, style=style))
        elapsed = human_duration(self.clock() - self.started)
        lines: list[Any] = [Text.assemble((self.title, "bold"), f"  {elapsed}"), grid]
        what, where = workload(self.obj) if self.obj else ("<none>", "<none>")
        if what != "<none>":
            lines.append(Text(f"{what} on {where}", style="dim"))
        if reason or message:
            bad = phase in ("Failed", "Terminated", "Stuck")
            lines.append(Text(f"{reason}: {message}" if reason else message, style="red" if bad else ""))
        return Group(*lines)


class LiveView:
    """A rich Live panel (terminals only)."""

    def __init__(self, console: Console, title: str, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.live import Live  # noqa: PLC0415

        self._panel = _Panel(title, clock)
        self._live: Live = Live(self._panel, console=console, refresh_per_second=8, transient=False)
        self._live.start()

    def update(self, obj: dict[str, Any]) -> None:
        self._panel.update(obj)
        self._live.refresh()

    def close(self) -> None:
        self._live.stop()


def _rv(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def is_terminal(obj: dict[str, Any]) -> bool:
    """Done, Failed or Terminated: nothing more will happen without the user."""
    return phase_of(obj) in TERMINAL


async def wait_for_polecat(
    cluster: Cluster,
    obj: dict[str, Any],
    view: ProgressView,
    *,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Follow ``obj`` until it reaches a terminal phase; return it as last seen.

    Raises exit-6 on ``timeout``, exit-1 if the Polecat is deleted meanwhile, exit-4
    when the apiserver stays unreachable for ``RECONNECT_BUDGET`` seconds.
    """
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    latest = [obj]

    def show(item: dict[str, Any]) -> None:
        latest[0] = item
        view.update(item)

    try:
        async with asyncio.timeout(timeout):
            return await _follow(cluster, namespace, name, obj, show)
    except TimeoutError as exc:
        phase = phase_of(latest[0])
        raise CLIError(
            f"gave up waiting after {human_duration(timeout or 0)}: polecat/{name} is still {phase} "
            f"(see `gastown describe -n {namespace} {name}`)",
            ExitCode.TIMEOUT,
        ) from exc


async def _follow(
    cluster: Cluster, namespace: str, name: str, obj: dict[str, Any], show: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    show(obj)
    if is_terminal(obj):
        return obj
    resource_version = _rv(obj)
    failing_since: float | None = None
    backoff = RECONNECT_BACKOFF.state()
    while True:
        try:
            async for kind, item in cluster.watch_polecat(namespace, name, resource_version):
                if kind == "BOOKMARK":
                    resource_version = _rv(item) or resource_version
                    continue
                if kind == "ERROR":
                    break  # e.g. 410 Gone: re-read below and watch from there
                if kind == "DELETED":
                    raise CLIError(f"polecat/{name} was deleted while waiting for it", ExitCode.FAILED)
                obj, resource_version = item, _rv(item) or resource_version
                show(obj)
                if is_terminal(obj):
                    return obj
                failing_since = None
                backoff.reset()
            obj = await cluster.get_polecat(namespace, name)
            resource_version = _rv(obj)
            failing_since = None
            backoff.reset()
            show(obj)
            if is_terminal(obj):
                return obj
        except CLIError as exc:
            if exc.code is not ExitCode.UNREACHABLE:
                raise
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > RECONNECT_BUDGET:
                raise
            await asyncio.sleep(backoff.next_delay())
