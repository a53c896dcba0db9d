# An IAM role assumed either by an AWS service (EKS, EC2 nodes, RDS monitoring, VPC flow logs, Grafana) or, through the
# cluster's OIDC provider, by one Kubernetes ServiceAccount (IRSA: the tracking server, the metrics collector), with
# inline policies of its own. AWS managed policies are attached by the caller, with literal ARNs: checkov does not
# follow values passed into this module from the stack's modules, and it must see them (CKV_AWS_274, CKV2_AWS_56).
data "aws_iam_policy_document" "assume" {
  # An AWS service, optionally only on behalf of this account (aws:SourceAccount, the confused-deputy guard).
  dynamic "statement" {
    for_each = var.service == null ? [] : [var.service]

    content {
      actions = var.assume_role_actions
      principals {
        type        = "Service"
        identifiers = [statement.value]
      }

      dynamic "condition" {
        for_each = var.source_account == null ? [] : [var.source_account]

        content {
          test     = "StringEquals"
          variable = "aws:SourceAccount"
          values   = [condition.value]
        }
      }
    }
  }

  # One ServiceAccount of the cluster, with a token issued for STS.
  dynamic "statement" {
    for_each = var.service_account == null ? [] : [var.service_account]

    content {
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [statement.value.oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${statement.value.namespace}:${statement.value.name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.assume.json

  lifecycle {
    precondition {
      condition     = (var.service == null) != (var.service_account == null)
      error_message = "Set exactly one of service (an AWS service assumes the role) and service_account (IRSA)."
    }
  }
}

resource "aws_iam_role_policy" "this" {
  for_each = var.inline_policies

  name   = each.key
  role   = aws_iam_role.this.id
  policy = each.value
}
