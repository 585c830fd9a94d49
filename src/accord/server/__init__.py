"""The control plane (``accord server``): a FastAPI app over the fleet store.

Build it with :func:`accord.server.app.create_app`; see that module for the routes, and
:mod:`accord.server.auth` (roles), :mod:`accord.server.problems` (error mapping) and
:mod:`accord.server.publish` (how desired state is computed, signed and published).
"""
