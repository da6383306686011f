output "ingest_url" {
  description = "Base URL of the API: the SDK callbacks POST to INGEST_URL/exposure (point a DNS name covered by certificate_arn at load_balancer_dns_name)."
  value       = "https://${aws_lb.ingest.dns_name}"
}

output "load_balancer_dns_name" {
  description = "DNS name of the load balancer in front of ingest."
  value       = aws_lb.ingest.dns_name
}

output "load_balancer_zone_id" {
  description = "Hosted zone of the load balancer, for a Route 53 alias record."
  value       = aws_lb.ingest.zone_id
}

output "lake_bucket" {
  description = "Name of the lake bucket."
  value       = aws_s3_bucket.lake.id
}

output "lake_url" {
  description = "The lake as the sink's --lake takes it."
  value       = local.lake_url
}

output "kms_key_arn" {
  description = "KMS key of the lake, the log groups, the secrets and MSK."
  value       = aws_kms_key.this.arn
}

output "redshift_copy_role_arn" {
  description = "Role Redshift assumes for COPY (the loader's --iam-role): associate it with the cluster or Serverless namespace."
  value       = aws_iam_role.redshift_copy.arn
}

output "kafka_brokers" {
  description = "Bootstrap servers the stages use (MSK: its IAM ones, port 9098, or SASL/SCRAM ones, port 9096, by msk_auth)."
  value       = local.brokers
}

output "ecs_cluster_name" {
  description = "ECS cluster of the three services."
  value       = aws_ecs_cluster.this.name
}

output "service_names" {
  description = "ECS service of each stage."
  value       = { for stage, service in aws_ecs_service.stage : stage => service.name }
}

output "task_role_arns" {
  description = "Task role of each stage (ingest's has no policy)."
  value       = { for stage, role in aws_iam_role.task : stage => role.arn }
}

output "log_groups" {
  description = "CloudWatch log group of each stage."
  value       = { for stage, group in aws_cloudwatch_log_group.stage : stage => group.name }
}

output "tasks_security_group_id" {
  description = "Security group of the tasks: allow it on a PostgreSQL warehouse or your own Kafka brokers."
  value       = aws_security_group.tasks.id
}

output "secret_arns" {
  description = "Secrets whose values are put outside Terraform (README): kafka_properties, write_keys, ip_hash_salt, msk_scram (null when not created)."
  value = {
    kafka_properties = one(aws_secretsmanager_secret.kafka_properties[*].arn)
    write_keys       = one(aws_secretsmanager_secret.write_keys[*].arn)
    ip_hash_salt     = one(aws_secretsmanager_secret.ip_hash_salt[*].arn)
    msk_scram        = one(aws_secretsmanager_secret.msk_scram[*].arn)
  }
}
