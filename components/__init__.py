"""atomic-mysql: the parts of the program, each a folder (docs/architecture.md has the rule of each).

facts, pins, tokens: shared values; settings/: the stack's settings; node/: what each node is
given (pure); aws/: the cluster on EC2; kube/: the Kubernetes kit; addons/: the cluster add-ons;
workload/: what runs on the cluster. Nothing is imported here.
"""
