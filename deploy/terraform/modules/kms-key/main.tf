# A customer-managed KMS key, rotated yearly, with AWS's default key policy (the account root administers the key, so
# IAM policies in the account decide who uses it) and, when services are named, a statement that lets those AWS
# services encrypt and decrypt with it (CloudWatch Logs, Amazon Managed Prometheus, ...). Used by every module that
# encrypts something.
data "aws_caller_identity" "current" {}

resource "aws_kms_key" "this" {
  description             = var.description
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.this.json
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = length(var.service_principals) > 0 ? [var.service_principals] : []

    content {
      sid       = var.service_statement_sid
      actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = statement.value
      }
    }
  }
}
