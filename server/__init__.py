"""etcdlite.server."""
