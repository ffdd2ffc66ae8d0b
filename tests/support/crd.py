"""The Polecat CRD on the lab: installed once, and status written as the operator writes it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gastown.api import crd
from gastown.devcluster import dispatch_policy
from gastown.devcluster.lab import Lab
from tests.support.ci import unavailable
from tests.support.waiting import wait_for

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_FILE = CRD_DIR / crd.CRD_FILENAME

_lock = asyncio.Lock()
_installed: set[str] = set()


async def install_crd(lab: Lab) -> None:
    """Apply the committed CRDs and the dispatch policy, wait until served; once per lab.

    Served means more than ``Established``: discovery can lag the condition by a
    moment, so it waits until ``kubectl get polecats`` works.
    """
    if not CRD_FILE.exists():
        unavailable(f"{CRD_FILE} is not generated: run `python -m gastown.api.crd`")
    async with _lock:
        if str(lab.kubeconfig) in _installed:
            return
        await lab.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))

        # Polled rather than `kubectl wait`, which fails outright ("<nil> is of the type <nil>")
        # when it reads the CRD before the apiserver has given it any condition (seen under load).
        async def established() -> bool:
            rc, out, _ = await lab.kubectl(
                "get",
                *(f"crd/{name}" for name in crd.CRD_NAMES),
                "-o",
                'jsonpath={.items[*].status.conditions[?(@.type=="Established")].status}',
                check=False,
            )
            return rc == 0 and out.split() == ["True"] * len(crd.CRD_NAMES)

        await wait_for(established, timeout=60, interval=0.1, what=f"CRDs {crd.CRD_NAMES} to be Established")

        async def served() -> bool:
            # All three kinds: a list of a kind whose watch cache is still starting is answered
            # 429 "storage is (re)initializing" for a moment after Established.
            rc, _, _ = await lab.kubectl("get", "pcat,gtrig,cvy", "-A", "--request-timeout=5s", check=False)
            return rc == 0

        await wait_for(served, timeout=20, interval=0.1, what="polecats, rigs and convoys to be served")
        # The chart's dispatch freeze (an admission policy, not CRD rules: gastown.api.policy),
        # so a lab refuses what every install refuses.
        await dispatch_policy.install(lab)
        _installed.add(str(lab.kubeconfig))


async def set_status(lab: Lab, namespace: str, name: str, status: dict[str, object]) -> None:
    """Write status through the status subresource, as the operator does."""
    await lab.kubectl(
        "-n", namespace, "patch", "polecat", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
