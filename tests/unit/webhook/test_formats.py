"""Names and references as git, Kubernetes and tmux accept them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gastown.webhook import formats


@pytest.mark.parametrize(
    ("url", "is_ssh"),
    [
        ("git@github.com:org/repo.git", True),
        ("github.com:org/repo", True),
        ("deploy@git.example.com:team/sub/repo.git", True),
        ("ssh://git@github.com/org/repo.git", True),
        ("ssh://git@git.example.com:2222/org/repo.git", True),
        ("ssh://[::1]:22/repo.git", True),
        ("https://github.com/org/repo.git", False),
        ("https://git.example.com:8443/org/repo", False),
        ("git@git.example.com:~user/repo.git", True),
    ],
)
def test_supported_repositories(url: str, is_ssh: bool) -> None:
    assert formats.git_repository(url) == (None, is_ssh)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://github.com/org/repo.git", "plain http"),
        ("file:///etc/passwd", "not supported"),
        ("git://github.com/org/repo.git", "not supported"),
        ("ext::sh", "not supported"),
        ("-oProxyCommand=touch /tmp/x", "starts with '-'"),
        ("ssh://-oProxyCommand=x/repo", "not a supported repository URL"),
        ("https://user:token@github.com/org/repo.git", "credentials"),
        ("git@github.com:org/repo.git; rm -rf /", "shell characters"),
        ("git@github.com:$(whoami)/repo", "shell characters"),
        ("git@github.com:org/repo\n", "shell characters"),
        ("/srv/git/repo.git", "not a supported repository URL"),
        ("git@github.com:../../etc", "'..' path component"),
        ("ssh://github.com:99999/org/repo", "port 99999 is out of range"),
        ("https://github.com", "not a supported repository URL"),
    ],
)
def test_refused_repositories(url: str, problem: str) -> None:
    found, _ = formats.git_repository(url)
    assert found is not None and problem in found


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("busybox", False),
        ("busybox:latest", False),
        ("ghcr.io/gastown/polecat-agent:0.1.0", True),
        ("localhost:5000/agent:v1", True),
        ("registry.example.com/a/b/c@sha256:" + "0" * 64, True),
        ("docker.io/library/python:3.11-slim", True),
        ("my_org/my__agent-x:1", True),
    ],
)
def test_image_references(image: str, pinned: bool) -> None:
    assert formats.image_reference(image) == (None, pinned)


@pytest.mark.parametrize(
    "image",
    [
        "Gastown/Agent",
        "agent:",
        "agent:-x",
        ":tag",
        "agent@sha256:abc",
        "a b",
        "ghcr.io//x",
        "x" * 300,
        "agent;id",
    ],
)
def test_invalid_image_references(image: str) -> None:
    problem, _ = formats.image_reference(image)
    assert problem is not None


@pytest.mark.parametrize("branch", ["main", "polecat/fix-login", "release-1.2", "feature/a_b", "v1"])
def test_good_branches(branch: str) -> None:
    assert formats.git_branch(branch) is None


@pytest.mark.parametrize(
    ("branch", "problem"),
    [
        ("a..b", "'..'"),
        ("a//b", "'//'"),
        ("a/", "end with"),
        ("a.", "end with"),
        ("a/.hidden", "start with '.'"),
        ("x.lock", ".lock"),
        ("HEAD", "HEAD"),
        ("-x", "starting with a letter"),
        ("a b", "starting with a letter"),
    ],
)
def test_bad_branches(branch: str, problem: str) -> None:
    found = formats.git_branch(branch)
    assert found is not None and problem in found


def test_paths() -> None:
    assert formats.absolute_path("/home/gastown/gt") is None
    assert formats.absolute_path("/srv/My Projects/x") is None
    assert "absolute" in (formats.absolute_path("srv/gt") or "")
    assert "';'" in (formats.absolute_path("/srv/gt;rm -rf /") or "")
    assert "'$'" in (formats.absolute_path("/srv/$HOME") or "")
    assert "'..'" in (formats.absolute_path("/srv/../etc") or "")
    assert formats.absolute_path("/srv/a\x07b") is not None


def test_command_lines() -> None:
    assert formats.command_line('claude --dangerously-skip-permissions < "$GASTOWN_TASK_FILE"') is None
    assert formats.command_line("  ") == "must not be empty or blank"
    assert "single line" in (formats.command_line("a\nb") or "")
    assert "control" in (formats.command_line("a\x1bb") or "")


def test_names() -> None:
    assert formats.dns1123_label("fix-login") is None
    assert formats.dns1123_label("fix.login") is not None
    assert formats.dns1123_label("a" * 64) is not None
    assert formats.dns1123_subdomain("agent-api-key.v2") is None
    assert formats.dns1123_subdomain("Agent") is not None
    assert formats.qualified_name("kubernetes.io/arch") is None
    assert formats.qualified_name("disktype") is None
    assert formats.qualified_name("Bad_Prefix/x") is not None
    assert formats.qualified_name("/x") is not None
    assert formats.label_value("") is None
    assert formats.label_value("-x") is not None
    assert formats.config_key("api-key") is None
    assert formats.config_key("..") is not None


def test_values_in_messages_are_cut_short() -> None:
    assert len(formats.quote_value("x" * 10_000)) < 70


CHECKERS = [
    lambda v: formats.git_repository(v)[0],
    lambda v: formats.image_reference(v)[0],
    formats.git_branch,
    formats.absolute_path,
    formats.command_line,
    formats.dns1123_label,
    formats.dns1123_subdomain,
    formats.qualified_name,
    formats.label_value,
    formats.config_key,
]


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_checkers_never_raise(value: str) -> None:
    for check in CHECKERS:
        result = check(value)
        assert result is None or isinstance(result, str)
