"""The two example Polecats ``gastown-operator dev`` applies, and what they need.

One per execution mode, so a newcomer sees both without writing anything:

* ``hello-local``: local mode, run by the tmux dispatcher in a tmux session on this
  host (reached over the dev sshd), attachable with ``gastown attach``;
* ``hello-kubernetes``: kubernetes mode, a Pod that clones ``hello.git`` from the
  dev git server (:mod:`gastown.devcluster.gitserver`) with the key in the Secret
  ``hello-git-ssh``, checking the host against the ConfigMap
  ``hello-git-known-hosts``, with the agent's API key from the Secret ``hello-agent``.

Where the Pod runs is :func:`kubernetes_target`'s one decision: on the lab's kwok
node (scheduled and reported Running, but no container runs: the output says it is
simulated) until the lab has a real node.

Everything here is a pure builder of manifests; dev applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gastown.api.models import GROUP, VERSION

NAMESPACE = "default"
LOCAL_NAME = "hello-local"
KUBERNETES_NAME = "hello-kubernetes"
GIT_SECRET = "hello-git-ssh"
KNOWN_HOSTS_CONFIGMAP = "hello-git-known-hosts"
AGENT_SECRET = "hello-agent"

# The local example's agent: a stand-in that shows the task and works for a while, so
# the user sees a Working Polecat and has time to attach. A real agent command goes here.
LOCAL_COMMAND = (
    'echo "Polecat at work. Task:"; cat "$GASTOWN_TASK_FILE"; '
    'for i in $(seq 1 600); do echo "step $i"; sleep 1; done'
)


@dataclass(frozen=True, slots=True)
class KubernetesTarget:
    """Where the kubernetes example's Pod runs, and how to say so."""

    simulated: bool
    git_host: str
    """The address the Pod reaches the dev git server at (sshd listens there)."""
    description: str


def kubernetes_target() -> KubernetesTarget:
    """The lab's real node when it has one, else kwok (simulated).

    The one place to plug the lab's real kubelet node in (issue 15,
    ``gastown/devcluster/node.py``): when the lab runs one, return
    ``KubernetesTarget(simulated=False, git_host=<the node bridge's gateway address>, ...)``
    so the Pod's clone reaches the git server from its network namespace.
    """
    return KubernetesTarget(
        simulated=True,
        git_host="127.0.0.1",
        description=(
            "SIMULATED: the lab has no real node; kwok schedules the Pod and reports it Running, "
            "but no container runs (nothing is cloned)"
        ),
    )


def local_polecat() -> dict[str, Any]:
    """A local-mode Polecat run by the tmux dispatcher (no Gas Town install needed)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Polecat",
        "metadata": {"name": LOCAL_NAME, "namespace": NAMESPACE},
        "spec": {
            "rig": "hello",
            "beadID": "gt-hello1",
            "task": "Say hello from a tmux session on this host.",
            "executionMode": "local",
            "local": {"dispatcher": "tmux", "command": LOCAL_COMMAND},
        },
    }


def kubernetes_polecat(git_url: str) -> dict[str, Any]:
    """A kubernetes-mode Polecat cloning ``git_url`` with the objects below."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Polecat",
        "metadata": {"name": KUBERNETES_NAME, "namespace": NAMESPACE},
        "spec": {
            "rig": "hello",
            "beadID": "gt-hello2",
            "task": "Say hello in README.md and push it to the work branch.",
            "executionMode": "kubernetes",
            "kubernetes": {
                "gitRepository": git_url,
                "gitSecretRef": {"name": GIT_SECRET},
                "knownHostsConfigMapRef": {"name": KNOWN_HOSTS_CONFIGMAP},
                "agentSecretRef": {"name": AGENT_SECRET, "key": "api-key"},
            },
        },
    }


def git_secret(private_key: str) -> dict[str, Any]:
    """The ``kubernetes.io/ssh-auth`` Secret the Pod clones and pushes with."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": GIT_SECRET, "namespace": NAMESPACE},
        "type": "kubernetes.io/ssh-auth",
        "stringData": {"ssh-privatekey": private_key},
    }


def known_hosts_configmap(known_hosts: str) -> dict[str, Any]:
    """The ConfigMap pinning the git server's host key (checked strictly by the clone)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": KNOWN_HOSTS_CONFIGMAP, "namespace": NAMESPACE},
        "data": {"known_hosts": known_hosts},
    }


def agent_secret() -> dict[str, Any]:
    """The agent's API key Secret; a placeholder: the example's agent calls no API."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": AGENT_SECRET, "namespace": NAMESPACE},
        "type": "Opaque",
        "stringData": {"api-key": "placeholder: put your agent's API key here"},
    }
