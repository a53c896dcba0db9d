# AWS for the credit-scoring stack: a VPC (network), EKS for the gateway, MLflow and Airflow (kubernetes), S3 for
# MLflow's artifacts, RDS PostgreSQL and ElastiCache Redis (storage), Amazon Managed Prometheus and Grafana plus
# CloudWatch logs (monitoring). Never applied from this repository: see README.md and docs/deployment.md.
locals {
  name = "credit-scoring-${var.environment}"
}

module "network" {
  source = "./modules/network"

  name               = local.name
  cidr_block         = var.vpc_cidr
  availability_zones = var.availability_zones
  single_nat_gateway = var.environment != "production"
}

module "storage" {
  source = "./modules/storage"

  name                       = local.name
  vpc_id                     = module.network.vpc_id
  private_subnet_ids         = module.network.private_subnet_ids
  allowed_security_group_ids = { eks_nodes = module.kubernetes.node_security_group_id }
  db_instance_class          = var.db_instance_class
  db_multi_az                = var.environment == "production"
  redis_node_type            = var.redis_node_type
  redis_replicas             = var.environment == "production" ? 1 : 0
}

module "kubernetes" {
  source = "./modules/kubernetes"

  name                   = local.name
  kubernetes_version     = var.kubernetes_version
  vpc_id                 = module.network.vpc_id
  private_subnet_ids     = module.network.private_subnet_ids
  endpoint_public_cidrs  = var.cluster_endpoint_public_cidrs
  node_instance_types    = var.node_instance_types
  node_count             = var.node_count
  artifact_bucket_arn    = module.storage.artifact_bucket_arn
  artifact_kms_key_arn   = module.storage.kms_key_arn
  mlflow_service_account = "mlflow"
  mlflow_namespace       = var.environment == "production" ? "credit-scoring" : "credit-scoring-${var.environment}"
}

module "monitoring" {
  source = "./modules/monitoring"

  name                = local.name
  alert_rules_file    = "${path.root}/../../monitoring/prometheus/alerts.yml"
  alert_email         = var.alert_email
  log_retention_days  = var.environment == "production" ? 90 : 14
  cluster_oidc_issuer = module.kubernetes.oidc_issuer
  cluster_oidc_arn    = module.kubernetes.oidc_provider_arn
  collector_namespace = "amazon-cloudwatch"
}
