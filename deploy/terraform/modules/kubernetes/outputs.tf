output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "API endpoint of the EKS cluster."
  value       = aws_eks_cluster.this.endpoint
}

output "node_security_group_id" {
  description = "Security group EKS gives the cluster and its managed nodes (allowed into RDS and ElastiCache)."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "oidc_issuer" {
  description = "OIDC issuer of the cluster, without https://."
  value       = local.oidc_issuer
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (IRSA)."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "mlflow_role_arn" {
  description = "IAM role of the mlflow ServiceAccount."
  value       = module.mlflow_role.arn
}
