"""REST paths: what the operator and the CLI send to the apiserver."""

from __future__ import annotations

from gastown.api.paths import resource_path


def test_core_and_group_paths() -> None:
    assert (
        resource_path("", "v1", "pods", namespace="team-a", name="p1") == "/api/v1/namespaces/team-a/pods/p1"
    )
    assert (
        resource_path(
            "gastown.gastown.io", "v1alpha1", "polecats", namespace="ns", name="x", subresource="status"
        )
        == "/apis/gastown.gastown.io/v1alpha1/namespaces/ns/polecats/x/status"
    )
    assert (
        resource_path("gastown.gastown.io", "v1alpha1", "polecats")
        == "/apis/gastown.gastown.io/v1alpha1/polecats"
    )


def test_a_typed_name_cannot_add_a_segment_or_a_query() -> None:
    path = resource_path("", "v1", "pods", namespace="a/../b", name="x?watch=1#y")
    assert path == "/api/v1/namespaces/a%2F..%2Fb/pods/x%3Fwatch%3D1%23y"
