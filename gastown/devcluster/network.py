"""Addresses of the real node's Pod network (see :mod:`gastown.devcluster.node`).

In a module of their own because both the lab (its apiserver serves on the gateway,
and its certificate names it) and the node (its CNI bridge) need them.
These addresses exist only in this machine's own network namespaces.
"""

from __future__ import annotations

BRIDGE = "gastown0"
POD_SUBNET = "10.88.0.0/16"
PREFIX_LENGTH = 16
# The host's address on the bridge: Pods reach the apiserver and the tests' git host here.
GATEWAY = "10.88.0.1"
