output "prometheus_workspace_id" {
  description = "ID of the Amazon Managed Prometheus workspace."
  value       = aws_prometheus_workspace.this.id
}

output "prometheus_remote_write_url" {
  description = "Remote-write URL of the workspace."
  value       = "${aws_prometheus_workspace.this.prometheus_endpoint}api/v1/remote_write"
}

output "grafana_url" {
  description = "URL of the Amazon Managed Grafana workspace."
  value       = "https://${aws_grafana_workspace.this.endpoint}"
}

output "gateway_log_group" {
  description = "CloudWatch log group of the gateway's JSON logs."
  value       = aws_cloudwatch_log_group.gateway.name
}

output "collector_role_arn" {
  description = "IAM role of the in-cluster collector's ServiceAccount (IRSA)."
  value       = module.collector_role.arn
}

output "alert_topic_arn" {
  description = "SNS topic the alert manager publishes to."
  value       = aws_sns_topic.alerts.arn
}
