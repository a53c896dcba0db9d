output "kms_key_arn" {
  description = "Customer-managed key of the bucket, the database, the cache and the secrets."
  value       = module.key.arn
}

output "artifact_bucket" {
  description = "Name of MLflow's artifact bucket."
  value       = aws_s3_bucket.artifacts.bucket
}

output "artifact_bucket_arn" {
  description = "ARN of MLflow's artifact bucket."
  value       = aws_s3_bucket.artifacts.arn
}

output "db_endpoint" {
  description = "host:port of the PostgreSQL instance."
  value       = aws_db_instance.this.endpoint
}

output "db_master_secret_arn" {
  description = "Secrets Manager secret of the RDS master user (managed by RDS)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "redis_endpoint" {
  description = "Primary endpoint of the Redis replication group (TLS)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret holding the Redis AUTH token."
  value       = aws_secretsmanager_secret.redis_auth.arn
}
