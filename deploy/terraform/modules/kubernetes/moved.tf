# Addresses from before the shared submodules (kms-key, iam-role): a state applied with the earlier layout moves its
# keys, roles and policies instead of destroying and recreating them.
moved {
  from = aws_kms_key.secrets
  to   = module.secrets_key.aws_kms_key.this
}

moved {
  from = aws_iam_role.cluster
  to   = module.cluster_role.aws_iam_role.this
}

moved {
  from = aws_iam_role.node
  to   = module.node_role.aws_iam_role.this
}

moved {
  from = aws_iam_role.mlflow
  to   = module.mlflow_role.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.mlflow_artifacts
  to   = module.mlflow_role.aws_iam_role_policy.this["mlflow-artifacts"]
}
