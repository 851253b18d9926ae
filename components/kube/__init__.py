"""Kubernetes in common: the provider every object is created with (never the ambient default),
and the object kit (metadata, labels, security context, resources, probes, spread)."""
