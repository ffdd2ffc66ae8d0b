"""REST paths of Kubernetes resources, the one place they are built.

Kept free of client imports so the user CLI can build paths without loading
kubernetes_asyncio. Namespace, name and subresource are percent-encoded: names from
the apiserver are DNS labels and come out unchanged, while a name a user typed on the
command line can never add a path segment or a query.
"""

from __future__ import annotations

from urllib.parse import quote


def _segment(part: str) -> str:
    return quote(part, safe="")


def resource_path(
    group: str,
    version: str,
    plural: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a collection or an object; ``group`` "" is the core API."""
    path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        path += f"/namespaces/{_segment(namespace)}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{_segment(name)}"
        if subresource:
            path += f"/{_segment(subresource)}"
    return path
