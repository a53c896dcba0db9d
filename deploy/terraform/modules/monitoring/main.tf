# Managed monitoring: Amazon Managed Prometheus (the gateway's and the drift job's series, the repository's alert
# rules as they are), its alert manager to an SNS topic, Amazon Managed Grafana (import the repository's dashboard),
# and a CloudWatch log group for the gateway's JSON logs (the managed stand-in for Loki + Alloy).
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

module "key" {
  source = "../kms-key"

  description           = "${var.name} monitoring: alert topic and logs"
  service_principals    = ["logs.${data.aws_region.current.region}.amazonaws.com", "aps.amazonaws.com"]
  service_statement_sid = "ServicesEncrypt"
}

resource "aws_cloudwatch_log_group" "gateway" {
  name              = "/credit-scoring/${var.name}/gateway"
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn
}

resource "aws_cloudwatch_log_group" "prometheus" {
  name              = "/aws/prometheus/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn
}

resource "aws_prometheus_workspace" "this" {
  alias       = var.name
  kms_key_arn = module.key.arn

  logging_configuration {
    log_group_arn = "${aws_cloudwatch_log_group.prometheus.arn}:*"
  }
}

# The same rules promtool tests in tests/monitoring (one file, no copy).
resource "aws_prometheus_rule_group_namespace" "alerts" {
  name         = "credit-scoring"
  workspace_id = aws_prometheus_workspace.this.id
  data         = file(var.alert_rules_file)
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = module.key.arn
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alert_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

data "aws_iam_policy_document" "alerts_topic" {
  statement {
    actions   = ["sns:Publish", "sns:GetTopicAttributes"]
    resources = [aws_sns_topic.alerts.arn]
    principals {
      type        = "Service"
      identifiers = ["aps.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_prometheus_workspace.this.arn]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts_topic.json
}

resource "aws_prometheus_alert_manager_definition" "this" {
  workspace_id = aws_prometheus_workspace.this.id
  definition   = <<-YAML
    alertmanager_config: |
      route:
        receiver: sns
        group_by: [alertname, severity]
      receivers:
        - name: sns
          sns_configs:
            - topic_arn: ${aws_sns_topic.alerts.arn}
              sigv4:
                region: ${data.aws_region.current.region}
  YAML
}

# --- The in-cluster collector (ADOT / Prometheus agent, installed with its Helm chart) remote-writes to the
# workspace and ships the gateway's logs, with this role (IRSA).
module "collector_role" {
  source = "../iam-role"

  name = "${var.name}-metrics-collector"
  service_account = {
    oidc_provider_arn = var.cluster_oidc_arn
    oidc_issuer       = var.cluster_oidc_issuer
    namespace         = var.collector_namespace
    name              = var.collector_service_account
  }
  inline_policies = { "remote-write-and-logs" = data.aws_iam_policy_document.collector.json }
}

data "aws_iam_policy_document" "collector" {
  statement {
    sid       = "RemoteWrite"
    actions   = ["aps:RemoteWrite"]
    resources = [aws_prometheus_workspace.this.arn]
  }

  statement {
    sid       = "ShipGatewayLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.gateway.arn}:*"]
  }
}

# --- Grafana: reads the workspace (and CloudWatch for the logs); users sign in through IAM Identity Center.
module "grafana_role" {
  source = "../iam-role"

  name           = "${var.name}-grafana"
  service        = "grafana.amazonaws.com"
  source_account = data.aws_caller_identity.current.account_id
}

resource "aws_iam_role_policy_attachment" "grafana" {
  for_each = toset([
    "arn:aws:iam::aws:policy/AmazonPrometheusQueryAccess",
    "arn:aws:iam::aws:policy/service-role/AmazonGrafanaCloudWatchAccess",
  ])

  role       = module.grafana_role.name
  policy_arn = each.value
}

resource "aws_grafana_workspace" "this" {
  name                     = var.name
  account_access_type      = "CURRENT_ACCOUNT"
  authentication_providers = ["AWS_SSO"]
  permission_type          = "CUSTOMER_MANAGED"
  role_arn                 = module.grafana_role.arn
  data_sources             = ["PROMETHEUS", "CLOUDWATCH"]
}
