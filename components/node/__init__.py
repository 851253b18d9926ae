"""What each node of the Atomic cluster is given at boot, rendered as plain text.

Pure functions of plain settings (settings/schema.py): nothing under node/ imports pulumi or
any component, so every file a node receives is rendered and tested without Pulumi, and the
AWS component only hands the result to EC2. The programs a node runs are real files under
node/files/, at the path they are installed to.
"""
