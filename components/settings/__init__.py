"""A stack's settings: schema.py (frozen dataclasses, plain data) and load.py (the only reader of
pulumi.Config, which checks every value before anything is registered).

Nothing is imported here, so that importing the schema never loads pulumi.
"""
