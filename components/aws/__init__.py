"""The cluster on AWS: network, security groups, per-node IAM, PKI delivery through SSM, the load
balancers and the instances. Builds on node/ (what each instance is given) and never on the
Kubernetes parts above it (kube/, addons/, workload/)."""
