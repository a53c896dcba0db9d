output "arn" {
  description = "ARN of the role (for an IRSA role, the ServiceAccount's eks.amazonaws.com/role-arn annotation)."
  value       = aws_iam_role.this.arn
}

output "name" {
  description = "Name of the role (for aws_iam_role_policy_attachment)."
  value       = aws_iam_role.this.name
}
