output "cluster_name" {
  description = "EKS cluster name: aws eks update-kubeconfig --name <this>."
  value       = module.kubernetes.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = module.kubernetes.cluster_endpoint
}

output "mlflow_role_arn" {
  description = "IAM role for the mlflow ServiceAccount (IRSA): the overlays' eks.amazonaws.com/role-arn annotation."
  value       = module.kubernetes.mlflow_role_arn
}

output "artifact_bucket" {
  description = "S3 bucket for MLflow's artifacts: --artifacts-destination s3://<this>/artifacts."
  value       = module.storage.artifact_bucket
}

output "db_endpoint" {
  description = "RDS PostgreSQL endpoint (host:port) for MLFLOW_BACKEND_STORE_URI and Airflow's SQL_ALCHEMY_CONN."
  value       = module.storage.db_endpoint
}

output "db_master_secret_arn" {
  description = "Secrets Manager secret holding the RDS master password (managed by RDS, rotated)."
  value       = module.storage.db_master_secret_arn
}

output "redis_endpoint" {
  description = "ElastiCache primary endpoint for REDIS_URL (rediss://, TLS)."
  value       = module.storage.redis_endpoint
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret holding the Redis AUTH token."
  value       = module.storage.redis_auth_secret_arn
}

output "prometheus_remote_write_url" {
  description = "Amazon Managed Prometheus remote-write URL for the in-cluster collector."
  value       = module.monitoring.prometheus_remote_write_url
}

output "grafana_url" {
  description = "Amazon Managed Grafana workspace URL (import monitoring/grafana/dashboards there)."
  value       = module.monitoring.grafana_url
}
