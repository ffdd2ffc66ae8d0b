"""What a kubernetes-mode Polecat may run: the operator's image and ServiceAccount policy.

A Polecat author chooses ``spec.kubernetes.image`` and ``spec.kubernetes.serviceAccountName``;
without a policy that is any image, with the API power of any ServiceAccount of the
namespace, handed to an LLM-driven process. The operator's settings
(:class:`~gastown.settings.PodDefaults`, chart values ``podDefaults.allowedImages`` and
``podDefaults.allowedServiceAccounts``) bound both:

* **Images**: ``allowed_images`` is a list of ``fnmatch`` patterns matched against the
  whole reference as written (``registry.example.com/agents/*``; ``*`` also crosses ``/``;
  a full ``...@sha256:<digest>`` reference pins one image). Empty allows every image,
  the default, so existing installs keep working. The operator's own default image
  (``podDefaults.agentImage``, used when the spec names none) is always allowed.
* **ServiceAccounts**: ``allowed_service_accounts`` lists the names a Polecat may set.
  Empty (the default) allows none: a Polecat without ``serviceAccountName`` runs with no
  API token at all, which is what an agent needs unless an operator decided otherwise.

The same pure checks run in the admission webhook (a clear denial at ``kubectl apply``)
and again in the executor before it creates a Pod, because the webhook can be down,
disabled, or bypassed (``failurePolicy: Ignore``).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from gastown.api.models import Polecat
from gastown.executors.base import UserError
from gastown.settings import PodDefaults

IMAGE_FIELD = "spec.kubernetes.image"
SERVICE_ACCOUNT_FIELD = "spec.kubernetes.serviceAccountName"
_WHO = "the operator's administrator can change it with the Helm chart value podDefaults.{value} (env {env})"


def image_problem(image: str | None, defaults: PodDefaults) -> str | None:
    """Why ``image`` (the spec's, None when unset) may not run, or None when it may."""
    if image is None or image == defaults.agent_image or not defaults.allowed_images:
        return None
    if any(fnmatchcase(image, pattern) for pattern in defaults.allowed_images):
        return None
    allowed = ", ".join(repr(p) for p in defaults.allowed_images)
    return (
        f"image {image!r} is not allowed by this operator's policy (allowed patterns: {allowed}; "
        f"or leave it unset for the default {defaults.agent_image!r}); "
        + _WHO.format(value="allowedImages", env="GASTOWN_POD_ALLOWED_IMAGES")
    )


def service_account_problem(name: str | None, defaults: PodDefaults) -> str | None:
    """Why the ServiceAccount ``name`` (None when unset) may not be used, or None."""
    if not name or name in defaults.allowed_service_accounts:
        return None
    if defaults.allowed_service_accounts:
        allowed = "allowed: " + ", ".join(repr(n) for n in defaults.allowed_service_accounts)
    else:
        allowed = "this operator allows none, so agent Pods run without an API token"
    return (
        f"ServiceAccount {name!r} is not allowed by this operator's policy ({allowed}): remove the "
        "field, or " + _WHO.format(value="allowedServiceAccounts", env="GASTOWN_POD_ALLOWED_SERVICE_ACCOUNTS")
    )


def policy_problems(polecat: Polecat, defaults: PodDefaults) -> list[tuple[str, str]]:
    """``(field, problem)`` for each policy breach of ``polecat``'s Pod; empty when it may run."""
    k8s = polecat.spec.kubernetes
    if k8s is None:
        return []
    found = [
        (IMAGE_FIELD, image_problem(k8s.image or None, defaults)),
        (SERVICE_ACCOUNT_FIELD, service_account_problem(k8s.serviceAccountName, defaults)),
    ]
    return [(field, problem) for field, problem in found if problem is not None]


def check_policy(polecat: Polecat, defaults: PodDefaults) -> None:
    """Raise ``UserError("NotAllowedByPolicy", ...)`` when the Pod would break the policy."""
    problems = policy_problems(polecat, defaults)
    if problems:
        raise UserError("NotAllowedByPolicy", "; ".join(f"{field}: {problem}" for field, problem in problems))
