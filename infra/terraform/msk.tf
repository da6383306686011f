# Optional: an MSK cluster for the pipeline (create_msk = true), otherwise bring your own
# brokers (kafka_brokers).
#
# The exposures binary's librdkafka is built without OpenSSL (rdkafka's default features),
# so it speaks PLAINTEXT (or SASL/PLAIN over it) only: MSK's client listener is
# TLS_PLAINTEXT (plaintext on 9092 for exposures, TLS on 9094 for other clients), in
# private subnets, reachable only from the tasks' security group. See README.

resource "aws_security_group" "msk" {
  count       = var.create_msk ? 1 : 0
  name        = "${var.name}-msk"
  description = "exposures MSK brokers: Kafka from the exposures tasks"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "msk_from_tasks" {
  count                        = var.create_msk ? 1 : 0
  security_group_id            = aws_security_group.msk[0].id
  description                  = "Kafka (plaintext listener) from the exposures tasks"
  ip_protocol                  = "tcp"
  from_port                    = 9092
  to_port                      = 9092
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
  #checkov:skip=CKV_AWS_81:The exposures binary has no TLS in its Kafka client (librdkafka built without OpenSSL); clients connect in plaintext inside the VPC, limited to the tasks' security group. TLS stays on for other clients and between brokers.
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
    unauthenticated = true
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.this.arn

    encryption_in_transit {
      client_broker = "TLS_PLAINTEXT"
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
