# Optional: an MSK cluster for the pipeline (create_msk = true), otherwise bring your own
# brokers (kafka_brokers).
#
# Clients connect over TLS, in private subnets, reachable only from the tasks' security
# group; unauthenticated access is off. They authenticate as msk_auth says:
# - "iam" (default, port 9098): MSK's IAM access control. Each stage's task role is its
#   identity (iam.tf grants it the cluster, its topics and its group, nothing more); the
#   stages run with --kafka-auth msk-iam. No secret exists.
# - "scram" (port 9096): the SCRAM user is the secret AmazonMSK_NAME (MSK wants that prefix and a customer-managed
# KMS key, so it uses the module's key); its value, {"username":…,"password":…}, is put
# outside Terraform, then msk_associate_scram_secret = true associates it with the
# cluster. The stages log in with the same user through the NAME/kafka-properties secret
# (EXPOSURES_KAFKA_PROPERTIES: security.protocol=SASL_SSL;sasl.mechanism=SCRAM-SHA-512;
# sasl.username=…;sasl.password=…). See README.

resource "aws_security_group" "msk" {
  count       = var.create_msk ? 1 : 0
  name        = "${var.name}-msk"
  description = "exposures MSK brokers: Kafka from the exposures tasks"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "msk_from_tasks" {
  count                        = var.create_msk ? 1 : 0
  security_group_id            = aws_security_group.msk[0].id
  description                  = "Kafka (TLS, IAM or SASL/SCRAM listener) from the exposures tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.msk_port
  to_port                      = local.msk_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_msk_configuration" "this" {
  count          = var.create_msk ? 1 : 0
  name           = "${var.name}-kafka"
  kafka_versions = [var.msk_kafka_version]

  # Topics are created with the partitions the pipeline wants (README); acks=all from
  # ingest needs two in-sync replicas to call an event durable.
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
  PROPERTIES
}

resource "aws_cloudwatch_log_group" "msk" {
  count             = var.create_msk ? 1 : 0
  name              = "/msk/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_msk_cluster" "this" {
  count                  = var.create_msk ? 1 : 0
  cluster_name           = var.name
  kafka_version          = var.msk_kafka_version
  number_of_broker_nodes = var.msk_broker_count

  broker_node_group_info {
    instance_type   = var.msk_instance_type
    client_subnets  = var.private_subnet_ids
    security_groups = [aws_security_group.msk[0].id]

    storage_info {
      ebs_storage_info {
        volume_size = var.msk_volume_size_gib
      }
    }

    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this[0].arn
    revision = aws_msk_configuration.this[0].latest_revision
  }

  client_authentication {
    unauthenticated = false

    sasl {
      iam   = var.msk_auth == "iam"
      scram = var.msk_auth == "scram"
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.this.arn

    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.msk[0].name
      }
    }
  }
}

# The SCRAM user of the stages. Terraform creates the secret empty, so the password never
# enters the state; its value is the JSON MSK reads:
#   {"username": "exposures", "password": "…"}
resource "aws_secretsmanager_secret" "msk_scram" {
  #checkov:skip=CKV2_AWS_57:The SCRAM password is repeated in NAME/kafka-properties, which the stages read; rotating it is a coordinated change of both secrets, not a rotation function.
  count       = var.create_msk && var.msk_auth == "scram" ? 1 : 0
  name        = "AmazonMSK_${var.name}"
  description = "SASL/SCRAM user of the exposures stages on MSK: {\"username\": ..., \"password\": ...}. Same credentials as ${var.name}/kafka-properties."
  kms_key_id  = aws_kms_key.this.arn
}

# Associated once the secret has its value (msk_associate_scram_secret, a second apply).
# MSK attaches a resource policy to the secret so the brokers can read it.
resource "aws_msk_single_scram_secret_association" "this" {
  count       = var.create_msk && var.msk_auth == "scram" && var.msk_associate_scram_secret ? 1 : 0
  cluster_arn = aws_msk_cluster.this[0].arn
  secret_arn  = aws_secretsmanager_secret.msk_scram[0].arn
}
