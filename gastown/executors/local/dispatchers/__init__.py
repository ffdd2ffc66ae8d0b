"""How local mode starts an agent: with Gas Town's ``gt sling``, or in a bare tmux session.

Both implement :class:`gastown.executors.local.dispatchers.base.Dispatcher`; the
``LocalExecutor`` picks one per Polecat from ``spec.local.dispatcher``.
"""
