# Addresses from before the shared submodules (kms-key, iam-role): a state applied with the earlier layout moves its
# keys, roles and policies instead of destroying and recreating them.
moved {
  from = aws_kms_key.logs
  to   = module.logs_key.aws_kms_key.this
}

moved {
  from = aws_iam_role.flow_logs
  to   = module.flow_logs_role.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.flow_logs
  to   = module.flow_logs_role.aws_iam_role_policy.this["write-flow-logs"]
}
