"""etcdlite.storage."""
