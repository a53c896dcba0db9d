variable "name" {
  description = "Cluster name and prefix of every resource name."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS control plane version."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the control plane's interfaces and the nodes."
  type        = list(string)
}

variable "endpoint_public_cidrs" {
  description = "CIDR blocks allowed to reach the public API endpoint."
  type        = list(string)
}

variable "node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
}

variable "node_count" {
  description = "Desired, minimum and maximum number of nodes."
  type = object({
    desired = number
    min     = number
    max     = number
  })
}

variable "artifact_bucket_arn" {
  description = "MLflow's artifact bucket: the tracking server's role may read and write it."
  type        = string
}

variable "artifact_kms_key_arn" {
  description = "Key that encrypts the artifact bucket."
  type        = string
}

variable "mlflow_namespace" {
  description = "Namespace of the mlflow ServiceAccount (deploy/kubernetes overlays)."
  type        = string
}

variable "mlflow_service_account" {
  description = "Name of the tracking server's ServiceAccount (deploy/kubernetes/base/mlflow-deployment.yaml)."
  type        = string
  default     = "mlflow"
}
