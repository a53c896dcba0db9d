variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "cidr_block" {
  description = "CIDR block of the VPC; split into one public and one private /20 per availability zone."
  type        = string
}

variable "availability_zones" {
  description = "Availability zones (at least two)."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "EKS, RDS Multi-AZ and ElastiCache failover need at least two availability zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper; staging) instead of one per zone (production)."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow logs in CloudWatch."
  type        = number
  default     = 365
}
