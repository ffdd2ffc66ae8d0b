"""Property-based fuzzing of the admission handler.

Properties:
1. Any body at all (random bytes, random JSON, random reviews) gets 200 or 400 and a JSON
   body; the handler never raises and never reports an internal error.
2. A well-formed review always gets its uid back and a boolean ``allowed``.
3. A Polecat made invalid by a known-bad mutation is never allowed, whatever noise is
   added around it. The oracle is the mutation catalogue below, written independently of
   the rules (each entry is a fact about Kubernetes, git or the spec, not a call into them).
4. Anything allowed on CREATE parses as a Polecat.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gastown.api.models import Polecat
from gastown.settings import Settings, SSHSettings
from gastown.webhook import review
from tests.unit.webhook.samples import envelope, k8s_polecat, local_polecat

SETTINGS = Settings(ssh=SSHSettings(host="127.0.0.1"))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON has no NaN or Infinity (Python's json.dumps writes them anyway; the apiserver never
# does), so they are left out: the parser rightly answers such a body with a 400.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
keys = st.sampled_from(
    ["apiVersion", "kind", "request", "uid", "operation", "object", "oldObject", "metadata", "spec", "name"]
)


def _check_shape(status: int, body: dict[str, Any]) -> None:
    assert status in (200, 400)
    json.dumps(body)  # serialisable
    if status == 200:
        response = body["response"]
        assert isinstance(response["allowed"], bool)
        assert response.get("status", {}).get("code") != 500, response


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(body: bytes) -> None:
    status, out = review.handle_review(body, SETTINGS)
    _check_shape(status, out)


@FUZZ
@given(st.dictionaries(keys | st.text(max_size=8), json_values, max_size=6))
def test_random_json_objects(doc: dict[str, Any]) -> None:
    status, out = review.handle_review(json.dumps(doc).encode(), SETTINGS)
    _check_shape(status, out)


@FUZZ
@given(
    obj=json_values | st.dictionaries(keys, json_values, max_size=4),
    old=json_values,
    operation=st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH", ""]),
    uid=st.text(min_size=1, max_size=40),
)
def test_random_reviews(obj: Any, old: Any, operation: str, uid: str) -> None:
    status, out = review.handle_review(envelope(obj, operation=operation, old=old, uid=uid), SETTINGS)
    _check_shape(status, out)
    if status == 200:
        assert out["response"]["uid"] == uid
        if operation == "CREATE" and out["response"]["allowed"]:
            assert isinstance(obj, dict)
            Polecat.model_validate(obj)


# --- random specs around valid bases ---------------------------------------------------------
spec_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["local", "kubernetes", "tmux", "gt", "", "/srv/gt", "main", "-x", "a..b", "Gi", "500m"]),
    st.integers(min_value=-10, max_value=10**7),
    st.none(),
    json_values,
)
spec_paths = st.sampled_from(
    [
        ("rig",),
        ("beadID",),
        ("task",),
        ("desiredState",),
        ("executionMode",),
        ("agent",),
        ("local",),
        ("local", "dispatcher"),
        ("local", "townRoot"),
        ("local", "command"),
        ("local", "workDir"),
        ("kubernetes",),
        ("kubernetes", "gitRepository"),
        ("kubernetes", "gitBranch"),
        ("kubernetes", "workBranch"),
        ("kubernetes", "image"),
        ("kubernetes", "activeDeadlineSeconds"),
        ("kubernetes", "resources", "requests", "cpu"),
        ("kubernetes", "resources", "limits", "memory"),
        ("kubernetes", "gitSecretRef", "name"),
        ("kubernetes", "agentSecretRef"),
        ("kubernetes", "tolerations"),
        ("kubernetes", "nodeSelector"),
    ]
)


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = obj["spec"]
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@FUZZ
@given(
    base=st.sampled_from(
        [k8s_polecat(), local_polecat(), local_polecat(dispatcher="tmux", command="claude")]
    ),
    edits=st.lists(st.tuples(spec_paths, spec_values), max_size=4),
    operation=st.sampled_from(["CREATE", "UPDATE"]),
)
def test_random_spec_edits(
    base: dict[str, Any], edits: list[tuple[tuple[str, ...], Any]], operation: str
) -> None:
    obj = copy.deepcopy(base)
    for path, value in edits:
        _set(obj, path, value)
    old = base if operation == "UPDATE" else None
    status, out = review.handle_review(envelope(obj, operation=operation, old=old), SETTINGS)
    _check_shape(status, out)
    assert status == 200
    if operation == "CREATE" and out["response"]["allowed"]:
        Polecat.model_validate(obj)


# Each mutation makes a Polecat invalid for a reason that does not depend on our rules.
MUTATIONS: list[tuple[str, tuple[str, ...], st.SearchStrategy[Any]]] = [
    ("rig with an uppercase letter", ("rig",), st.from_regex(r"[a-z]{0,5}[A-Z][a-z]{0,5}", fullmatch=True)),
    ("rig with shell characters", ("rig",), st.from_regex(r"[a-z]{1,5}[;$`|&][a-z]{1,5}", fullmatch=True)),
    ("rig over 63 characters", ("rig",), st.from_regex(r"[a-z]{64,80}", fullmatch=True)),
    ("bead with spaces", ("beadID",), st.from_regex(r"gt-[a-z]{1,5} [a-z]{1,5}", fullmatch=True)),
    (
        "unknown mode",
        ("executionMode",),
        st.text(min_size=1, max_size=10).filter(lambda s: s not in {"local", "kubernetes"}),
    ),
    (
        "plain http repository",
        ("kubernetes", "gitRepository"),
        st.from_regex(r"http://[a-z]{1,8}\.com/[a-z]{1,8}", fullmatch=True),
    ),
    (
        "file repository",
        ("kubernetes", "gitRepository"),
        st.from_regex(r"file:///[a-z]{1,8}", fullmatch=True),
    ),
    (
        "option-like repository",
        ("kubernetes", "gitRepository"),
        st.from_regex(r"-o[A-Za-z]{1,10}=[a-z]{1,5}", fullmatch=True),
    ),
    (
        "image with uppercase repository",
        ("kubernetes", "image"),
        st.from_regex(r"[a-z]{1,5}/[A-Z][a-z]{1,5}", fullmatch=True),
    ),
    ("image with spaces", ("kubernetes", "image"), st.from_regex(r"[a-z]{1,5} [a-z]{1,5}", fullmatch=True)),
    ("zero or negative deadline", ("kubernetes", "activeDeadlineSeconds"), st.integers(max_value=0)),
    (
        "branch with ..",
        ("kubernetes", "gitBranch"),
        st.from_regex(r"[a-z]{1,5}\.\.[a-z]{1,5}", fullmatch=True),
    ),
    (
        "branch ending in .lock",
        ("kubernetes", "workBranch"),
        st.from_regex(r"[a-z]{1,5}\.lock", fullmatch=True),
    ),
    (
        "quantity that is not one",
        ("kubernetes", "resources", "limits", "cpu"),
        st.from_regex(r"[a-z]{2,8}", fullmatch=True),
    ),
    ("relative town root", ("local", "townRoot"), st.from_regex(r"[a-z]{1,8}/[a-z]{1,8}", fullmatch=True)),
    (
        "town root with shell characters",
        ("local", "townRoot"),
        st.from_regex(r"/[a-z]{1,5}[;$`|&][a-z]{0,5}", fullmatch=True),
    ),
    ("multi-line command", ("local", "command"), st.from_regex(r"[a-z]{1,5}\n[a-z]{1,5}", fullmatch=True)),
]
K8S_ONLY = {"kubernetes"}


@FUZZ
@given(
    mutation=st.sampled_from(MUTATIONS),
    data=st.data(),
    noise=st.dictionaries(st.from_regex(r"x[a-z]{1,6}", fullmatch=True), json_values, max_size=3),
)
def test_invalid_specs_are_never_allowed(
    mutation: tuple[str, tuple[str, ...], st.SearchStrategy[Any]], data: st.DataObject, noise: dict[str, Any]
) -> None:
    _, path, values = mutation
    if path[0] == "kubernetes":
        obj = k8s_polecat()
    elif path[0] == "local":
        obj = local_polecat(dispatcher="tmux", command="claude") if path[-1] == "command" else local_polecat()
    else:
        obj = data.draw(st.sampled_from([k8s_polecat(), local_polecat()]))
    _set(obj, path, data.draw(values))
    obj["spec"].update(noise)  # unknown fields must not make an invalid object acceptable
    status, out = review.handle_review(envelope(obj), SETTINGS)
    assert status == 200
    assert out["response"]["allowed"] is False, (mutation[0], obj["spec"])
