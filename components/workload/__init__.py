"""What runs on the cluster for the users: the namespace, the replicated MySQL set and the
Guestbook. Kubernetes objects only, on whatever cluster the provider points at."""
