variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "eu-central-1"
}

variable "environment" {
  description = "Environment name (staging, production): part of every resource name."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones to spread subnets, nodes, RDS and ElastiCache over (at least two)."
  type        = list(string)
  default     = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
}

variable "kubernetes_version" {
  description = "EKS control plane version."
  type        = string
  default     = "1.32"
}

variable "cluster_endpoint_public_cidrs" {
  description = "CIDR blocks allowed to reach the EKS API endpoint from the internet (CI runners, operators)."
  type        = list(string)
}

variable "node_instance_types" {
  description = "Instance types of the managed node group (the gateway is CPU-bound: compute-optimised)."
  type        = list(string)
  default     = ["c6i.large"]
}

variable "node_count" {
  description = "Desired, minimum and maximum number of nodes."
  type = object({
    desired = number
    min     = number
    max     = number
  })
  default = {
    desired = 3
    min     = 2
    max     = 6
  }
}

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL database (MLflow's backend store, Airflow's metadata)."
  type        = string
  default     = "db.t4g.medium"
}

variable "redis_node_type" {
  description = "ElastiCache node type (prediction cache and prediction stream)."
  type        = string
  default     = "cache.t4g.small"
}

variable "alert_email" {
  description = "Address subscribed to the alert topic (Amazon Managed Prometheus alert manager); empty for none."
  type        = string
  default     = ""
}
