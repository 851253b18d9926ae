"""The replicated MySQL set: set.py wires the objects, config.py renders the config and SQL
(pure), scripts/*.sh are the programs the pods run (shipped in the ConfigMap)."""
