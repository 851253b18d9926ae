"""atomic-mysql components: one module per ComponentResource, plus pure renderers."""
