"""Resource type tokens: the program's own component types and the provider types its tools read.

A type token is part of the URN of the resource and of every child under it: renaming one makes
the engine see a new resource and replace the old one (with all it holds). The component tokens
therefore stay exactly as first released, `atomic-mysql:<module>:<Type>` with the module name of
that time, even where the module has since moved. The provider tokens are the providers' own,
written once here for the preview tools, the tests and the policy pack (which loads this file
from the repository: it imports nothing).
"""

from __future__ import annotations

# --------------------------------------------------------------------------
# Components (URN-stable: never rename)
# --------------------------------------------------------------------------

ATOMIC_CLUSTER = "atomic-mysql:cluster:AtomicCluster"
CLUSTER_PKI = "atomic-mysql:pki:ClusterPki"
TCP_LOAD_BALANCER = "atomic-mysql:nlb:TcpLoadBalancer"
ETCD_BACKUP_BUCKET = "atomic-mysql:etcd_backup:EtcdBackupBucket"
CLUSTER_ADDONS = "atomic-mysql:addons:ClusterAddons"
CORE_DNS = "atomic-mysql:coredns:CoreDns"
EBS_CSI_DRIVER = "atomic-mysql:ebs_csi:EbsCsiDriver"
METRICS_SERVER = "atomic-mysql:metrics_server:MetricsServer"
NETWORK_POLICY_AGENT = "atomic-mysql:network_policy:NetworkPolicyAgent"
WORKLOAD = "atomic-mysql:workload:Workload"
MYSQL_SET = "atomic-mysql:mysql_set:MySqlReplicatedSet"
GUESTBOOK = "atomic-mysql:guestbook:Guestbook"
PRIVATE_BUCKET = "atomic-mysql:backup_bucket:PrivateBucket"
MYSQL_BACKUP_STORE = "atomic-mysql:backup_bucket:MysqlBackupStore"

# --------------------------------------------------------------------------
# Pulumi
# --------------------------------------------------------------------------

STACK = "pulumi:pulumi:Stack"
KUBERNETES_PROVIDER = "pulumi:providers:kubernetes"
AWS_PROVIDER = "pulumi:providers:aws"
# The engine's builtin function behind a StackReference (pulumi/pulumi pkg/resource/deploy/builtins.go;
# the Node.js SDK's synchronous StackReference outputs invoke it the same way, sdk/nodejs/stackReference.ts).
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"

# --------------------------------------------------------------------------
# AWS
# --------------------------------------------------------------------------

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
SUBNET_CIDR_RESERVATION = "aws:ec2/subnetCidrReservation:SubnetCidrReservation"
INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
INSTANCE_CONNECT_ENDPOINT = "aws:ec2transitgateway/instanceConnectEndpoint:InstanceConnectEndpoint"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE_ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EIP = "aws:ec2/eip:Eip"
EBS_VOLUME = "aws:ebs/volume:Volume"
IAM_ROLE = "aws:iam/role:Role"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_POLICY = "aws:iam/policy:Policy"
IAM_INSTANCE_PROFILE = "aws:iam/instanceProfile:InstanceProfile"
KMS_KEY = "aws:kms/key:Key"
KMS_ALIAS = "aws:kms/alias:Alias"
SSM_PARAMETER = "aws:ssm/parameter:Parameter"
S3_BUCKET = "aws:s3/bucket:Bucket"
S3_BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
S3_BUCKET_ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
S3_BUCKET_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_BUCKET_OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
S3_BUCKET_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
S3_BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
TARGET_GROUP_ATTACHMENT = "aws:lb/targetGroupAttachment:TargetGroupAttachment"
LISTENER = "aws:lb/listener:Listener"
S3_BUCKET = "aws:s3/bucket:Bucket"
S3_BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
S3_BUCKET_ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
S3_BUCKET_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
S3_BUCKET_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
S3_BUCKET_OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
IAM_USER = "aws:iam/user:User"
IAM_USER_POLICY = "aws:iam/userPolicy:UserPolicy"
IAM_ACCESS_KEY = "aws:iam/accessKey:AccessKey"

# Functions (invokes)
GET_AMI = "aws:ec2/getAmi:getAmi"
GET_SUBNET = "aws:ec2/getSubnet:getSubnet"
GET_AVAILABILITY_ZONES = "aws:index/getAvailabilityZones:getAvailabilityZones"
GET_REGION = "aws:index/getRegion:getRegion"
GET_CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"
GET_PARTITION = "aws:index/getPartition:getPartition"
GET_POLICY_DOCUMENT = "aws:iam/getPolicyDocument:getPolicyDocument"

# --------------------------------------------------------------------------
# TLS and random
# --------------------------------------------------------------------------

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
LOCALLY_SIGNED_CERT = "tls:index/locallySignedCert:LocallySignedCert"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
RANDOM_BYTES = "random:index/randomBytes:RandomBytes"

# --------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------

STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
CRON_JOB = "kubernetes:batch/v1:CronJob"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE = "kubernetes:core/v1:Service"
NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PERSISTENT_VOLUME = "kubernetes:core/v1:PersistentVolume"
PERSISTENT_VOLUME_CLAIM = "kubernetes:core/v1:PersistentVolumeClaim"
PERSISTENT_VOLUME_CLAIM_PATCH = "kubernetes:core/v1:PersistentVolumeClaimPatch"
API_SERVICE = "kubernetes:apiregistration.k8s.io/v1:APIService"
