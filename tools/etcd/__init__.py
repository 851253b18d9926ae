"""etcd of a deployed stack: its backups, a restore of the whole control plane, the replacement of a master."""
