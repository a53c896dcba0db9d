# Addresses from before the shared submodules (kms-key, iam-role): a state applied with the earlier layout moves its
# keys, roles and policies instead of destroying and recreating them.
moved {
  from = aws_kms_key.this
  to   = module.key.aws_kms_key.this
}

moved {
  from = aws_iam_role.rds_monitoring
  to   = module.rds_monitoring_role.aws_iam_role.this
}
