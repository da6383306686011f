# The three stages on ECS Fargate, one service each, from the same image (the command is
# the stage). Container health checks run the image's probe (infra/healthcheck.sh).

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "stage" {
  for_each          = local.stages
  name              = "/ecs/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_ecs_task_definition" "stage" {
  for_each                 = local.stages
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.sizes[each.key].cpu
  memory                   = local.sizes[each.key].memory
  execution_role_arn       = aws_iam_role.execution[each.key].arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Ingest's spool: a bind mount on the task's ephemeral storage (the image's VOLUME gives
  # it to the unprivileged user). It lives as long as the task: see README, "The spool on
  # Fargate".
  dynamic "ephemeral_storage" {
    for_each = each.key == "ingest" && var.ingest_ephemeral_storage_gib > 20 ? [var.ingest_ephemeral_storage_gib] : []
    content {
      size_in_gib = ephemeral_storage.value
    }
  }

  dynamic "volume" {
    for_each = each.key == "ingest" ? ["spool"] : []
    content {
      name = volume.value
    }
  }

  container_definitions = jsonencode([
    {
      name                   = each.key
      image                  = var.image
      essential              = true
      command                = [each.key]
      user                   = "10001:10001"
      readonlyRootFilesystem = true
      privileged             = false
      portMappings = [
        { containerPort = local.ports[each.key], protocol = "tcp" },
      ]
      environment = [
        for name, value in local.environment[each.key] : { name = name, value = value } if value != null
      ]
      secrets = [
        for name, arn in local.secrets[each.key] : { name = name, valueFrom = arn } if arn != null
      ]
      mountPoints = each.key == "ingest" ? [
        { sourceVolume = "spool", containerPath = "/var/lib/exposures/spool", readOnly = false },
      ] : []
      healthCheck = {
        command     = ["CMD", "exposures-healthcheck"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      # SIGTERM, then at most this long: ingest answers in-flight requests
      # (--shutdown-timeout, 30 s) and flushes its producer; the sink finishes an upload.
      stopTimeout = 120
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.stage[each.key].name
          awslogs-region        = local.region
          awslogs-stream-prefix = each.key
        }
      }
    },
  ])
}

resource "aws_ecs_service" "stage" {
  for_each                          = local.stages
  name                              = "${var.name}-${each.key}"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.stage[each.key].arn
  desired_count                     = local.sizes[each.key].count
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  propagate_tags                    = "SERVICE"
  enable_execute_command            = false
  health_check_grace_period_seconds = each.key == "ingest" ? 30 : null

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  dynamic "load_balancer" {
    for_each = each.key == "ingest" ? [each.key] : []
    content {
      target_group_arn = aws_lb_target_group.ingest.arn
      container_name   = load_balancer.value
      container_port   = local.ports.ingest
    }
  }

  # The target group must be behind a listener before ingest's service uses it.
  depends_on = [aws_lb_listener_rule.api]
}

# ---------------------------------------------------------------------------------------
# Security groups
# ---------------------------------------------------------------------------------------

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = "exposures tasks: the API from the load balancer, metrics from Prometheus; out to Kafka and AWS APIs"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "HTTP API of ingest from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.ingest
  to_port                      = local.ports.ingest
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_metrics" {
  for_each          = { for pair in setproduct(var.metrics_cidr_blocks, values(local.ports)) : "${pair[0]}-${pair[1]}" => pair }
  security_group_id = aws_security_group.tasks.id
  description       = "Prometheus scrapes /metrics"
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
  cidr_ipv4         = each.value[0]
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "AWS APIs over HTTPS: S3, Redshift Data API, Secrets Manager, ECR, CloudWatch Logs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "tasks_kafka" {
  for_each          = var.create_msk ? toset([]) : toset(var.kafka_cidr_blocks)
  security_group_id = aws_security_group.tasks.id
  description       = "Kafka brokers"
  ip_protocol       = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "tasks_msk" {
  count                        = var.create_msk ? 1 : 0
  security_group_id            = aws_security_group.tasks.id
  description                  = "MSK brokers (TLS, IAM or SASL/SCRAM listener)"
  ip_protocol                  = "tcp"
  from_port                    = local.msk_port
  to_port                      = local.msk_port
  referenced_security_group_id = aws_security_group.msk[0].id
}

# PostgreSQL as the warehouse: allow the tasks' security group on your database's side;
# the egress to it is here.
resource "aws_vpc_security_group_egress_rule" "tasks_postgres" {
  security_group_id = aws_security_group.tasks.id
  description       = "PostgreSQL warehouse inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}
