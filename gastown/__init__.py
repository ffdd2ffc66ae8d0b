"""gastown: a Kubernetes operator for Gas Town Polecats (AI coding-agent workers).

Importing the package first installs :mod:`gastown.lazy_kubernetes`, so that
``kubernetes_asyncio.client`` loads only the generated API and model classes the process uses
(about a third less resident memory for the operator; see that module's docstring). It must
run before anything imports ``kubernetes_asyncio.client``; every entry point imports
``gastown`` first, and when the client is already loaded the call does nothing.
"""

from gastown.lazy_kubernetes import install as _install_lazy_kubernetes

_install_lazy_kubernetes()
