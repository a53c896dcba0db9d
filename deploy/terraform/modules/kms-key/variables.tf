variable "description" {
  description = "Description of the key (what it encrypts)."
  type        = string
}

variable "service_principals" {
  description = "AWS service principals that may encrypt and decrypt with the key (logs.<region>.amazonaws.com, ...)."
  type        = list(string)
  default     = []
}

variable "service_statement_sid" {
  description = "Sid of the key policy statement for service_principals."
  type        = string
  default     = "ServicesUse"
}

variable "deletion_window_in_days" {
  description = "Days between scheduling the key's deletion and its deletion (7 to 30); null for AWS's default (30)."
  type        = number
  default     = null
}
