# EKS: a private-subnet cluster with secrets encryption and control-plane logs, one managed node group, and the OIDC
# provider for IAM roles for service accounts (the tracking server's S3 access).
module "secrets_key" {
  source = "../kms-key"

  description = "${var.name} EKS secrets encryption"
}

module "cluster_role" {
  source = "../iam-role"

  name                = "${var.name}-eks-cluster"
  service             = "eks.amazonaws.com"
  assume_role_actions = ["sts:AssumeRole", "sts:TagSession"]
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = module.cluster_role.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
}

resource "aws_cloudwatch_log_group" "cluster" {
  # The name EKS writes control-plane logs to.
  name              = "/aws/eks/${var.name}/cluster"
  retention_in_days = 365
  kms_key_id        = module.secrets_key.arn
}

resource "aws_eks_cluster" "this" {
  name     = var.name
  version  = var.kubernetes_version
  role_arn = module.cluster_role.arn

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  access_config {
    authentication_mode = "API"
  }

  vpc_config {
    subnet_ids              = var.private_subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = length(var.endpoint_public_cidrs) > 0
    public_access_cidrs     = var.endpoint_public_cidrs
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = module.secrets_key.arn
    }
  }

  depends_on = [aws_iam_role_policy_attachment.cluster, aws_cloudwatch_log_group.cluster]
}

# --- Nodes
module "node_role" {
  source = "../iam-role"

  name    = "${var.name}-eks-node"
  service = "ec2.amazonaws.com"
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
  ])

  role       = module.node_role.name
  policy_arn = each.value
}

resource "aws_launch_template" "node" {
  name_prefix = "${var.name}-node-"

  # IMDSv2 only, one hop: pods cannot borrow the node's role through the instance metadata service.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 50
      volume_type = "gp3"
      encrypted   = true
    }
  }
}

resource "aws_eks_node_group" "default" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "default"
  node_role_arn   = module.node_role.arn
  subnet_ids      = var.private_subnet_ids
  instance_types  = var.node_instance_types
  ami_type        = "AL2023_x86_64_STANDARD"

  scaling_config {
    desired_size = var.node_count.desired
    min_size     = var.node_count.min
    max_size     = var.node_count.max
  }

  update_config {
    max_unavailable = 1
  }

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size] # the cluster autoscaler owns it
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# --- EKS add-ons the manifests of deploy/kubernetes need: the VPC CNI with network-policy enforcement (NetworkPolicy
# objects are accepted but not enforced without it) and the Metrics Server (the gateway's HPA reads its CPU figures;
# EKS does not deploy it by default). Versions: EKS's default for the cluster version unless pinned here.
resource "aws_eks_addon" "vpc_cni" {
  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = "vpc-cni"
  resolve_conflicts_on_update = "OVERWRITE"
  configuration_values        = jsonencode({ enableNetworkPolicy = "true" })
}

resource "aws_eks_addon" "metrics_server" {
  cluster_name = aws_eks_cluster.this.name
  addon_name   = "metrics-server"

  depends_on = [aws_eks_node_group.default]
}

# --- IRSA: the tracking server's ServiceAccount may use the artifact bucket, and nothing else does.
data "tls_certificate" "oidc" {
  url = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

resource "aws_iam_openid_connect_provider" "this" {
  url             = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = [data.tls_certificate.oidc.certificates[0].sha1_fingerprint]
}

locals {
  oidc_issuer = replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
}

module "mlflow_role" {
  source = "../iam-role"

  name = "${var.name}-mlflow"
  service_account = {
    oidc_provider_arn = aws_iam_openid_connect_provider.this.arn
    oidc_issuer       = local.oidc_issuer
    namespace         = var.mlflow_namespace
    name              = var.mlflow_service_account
  }
  inline_policies = { "mlflow-artifacts" = data.aws_iam_policy_document.mlflow_artifacts.json }
}

data "aws_iam_policy_document" "mlflow_artifacts" {
  statement {
    sid       = "ListBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.artifact_bucket_arn]
  }

  statement {
    sid       = "ReadWriteArtifacts"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${var.artifact_bucket_arn}/*"]
  }

  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.artifact_kms_key_arn]
  }
}
