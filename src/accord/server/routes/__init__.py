"""One router per area of the API; :func:`accord.server.app.create_app` mounts them."""
