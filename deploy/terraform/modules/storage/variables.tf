variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the database and the cache."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for RDS and ElastiCache (one per zone)."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups that may reach PostgreSQL and Redis, by a static name (for_each keys must be known at plan time; the ids may not be): { eks_nodes = <id> }."
  type        = map(string)
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
}

variable "db_multi_az" {
  description = "A standby in another zone (production)."
  type        = bool
  default     = true
}

variable "db_allocated_storage_gb" {
  description = "Initial storage of the database; it grows automatically up to ten times this."
  type        = number
  default     = 50
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
}

variable "redis_replicas" {
  description = "Read replicas of the Redis primary (1 or more enables automatic failover)."
  type        = number
  default     = 1
}

variable "artifact_retention_days" {
  description = "Noncurrent versions of artifacts are deleted after this many days."
  type        = number
  default     = 90
}
