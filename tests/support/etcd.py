"""The lab's etcd, reached directly: for faults the apiserver cannot be asked to cause."""

from __future__ import annotations

import base64

import aiohttp

from gastown.devcluster.lab import Lab


async def compact_etcd(lab: Lab) -> int:
    """Compact etcd's history up to its current revision (what the apiserver does every
    5 minutes); returns the revision. Older resourceVersions are gone for good."""
    base = f"http://127.0.0.1:{lab.etcd_port}/v3/kv"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/range", json={"key": base64.b64encode(b"/").decode()}) as resp:
            revision = int((await resp.json())["header"]["revision"])
        async with http.post(
            f"{base}/compaction", json={"revision": str(revision), "physical": True}
        ) as resp:
            assert resp.status == 200, await resp.text()
    return revision
