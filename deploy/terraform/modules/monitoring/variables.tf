variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "alert_rules_file" {
  description = "Prometheus rule file loaded into Amazon Managed Prometheus (monitoring/prometheus/alerts.yml)."
  type        = string
}

variable "alert_email" {
  description = "Address subscribed to the alert topic; empty for none."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "Retention of the gateway's JSON logs in CloudWatch."
  type        = number
  default     = 90
}

variable "cluster_oidc_issuer" {
  description = "OIDC issuer of the EKS cluster (without https://), for the collector's role."
  type        = string
}

variable "cluster_oidc_arn" {
  description = "ARN of the cluster's IAM OIDC provider."
  type        = string
}

variable "collector_namespace" {
  description = "Namespace of the in-cluster collector (ADOT or Prometheus agent) that remote-writes and ships logs."
  type        = string
}

variable "collector_service_account" {
  description = "ServiceAccount of that collector."
  type        = string
  default     = "metrics-collector"
}
