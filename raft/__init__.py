"""etcdlite.raft."""
