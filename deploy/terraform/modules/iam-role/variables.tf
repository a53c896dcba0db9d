variable "name" {
  description = "Name of the role."
  type        = string
}

variable "service" {
  description = "AWS service principal that assumes the role (eks.amazonaws.com, ...); null for an IRSA role."
  type        = string
  default     = null
}

variable "assume_role_actions" {
  description = "Actions the service is allowed in the trust policy (not used for an IRSA role)."
  type        = list(string)
  default     = ["sts:AssumeRole"]

  validation {
    condition = length(var.assume_role_actions) > 0 && alltrue([
      for action in var.assume_role_actions : startswith(action, "sts:")
    ])
    error_message = "A trust policy grants STS actions only (sts:AssumeRole, sts:TagSession, ...)."
  }
}

variable "source_account" {
  description = "The service may assume the role only on behalf of this account (aws:SourceAccount); null: no condition."
  type        = string
  default     = null
}

variable "service_account" {
  description = "ServiceAccount that assumes the role through the cluster's OIDC provider (IRSA); issuer without https://."
  type = object({
    oidc_provider_arn = string
    oidc_issuer       = string
    namespace         = string
    name              = string
  })
  default = null
}

variable "inline_policies" {
  description = "Inline policies of the role: name (a for_each key: known at plan time) -> policy JSON."
  type        = map(string)
  default     = {}
}
