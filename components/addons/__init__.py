"""What the aws cluster runs in kube-system so that the workload can run on it: CoreDNS, the EBS
CSI driver with the default StorageClass, metrics-server. Kubernetes objects only, on the
cluster's provider: nothing here reaches AWS or the node renderers."""
