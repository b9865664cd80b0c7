"""The local stack: real components started by the project's own code, on 127.0.0.1 only.

``make up`` / ``make down`` and the integration tests use the same :class:`~.stack.Stack`, so what
the tests exercise is what a developer runs. Every process is started in its own session and
recorded in a pid file (pid, process-group id, start time); stopping signals exactly that
process group and nothing else.
"""
