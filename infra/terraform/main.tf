# exposures on AWS: ingest behind an ALB, sink and load on ECS Fargate, the lake on S3,
# Kafka brought along or created (MSK), the warehouse Redshift (Data API) or PostgreSQL.
# Every container setting is an EXPOSURES_* variable of `exposures <stage> --help`;
# tests/pipeline/infra.rs checks each one against the binary, and that the ports agree.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # The lake: s3://BUCKET[/PREFIX]; object keys under it start with key_prefix.
  key_prefix = var.lake_prefix == "" ? "" : "${var.lake_prefix}/"
  lake_url   = var.lake_prefix == "" ? "s3://${var.lake_bucket_name}" : "s3://${var.lake_bucket_name}/${var.lake_prefix}"

  # MSK: its bootstrap servers for IAM (port 9098) or SASL/SCRAM (port 9096).
  msk_iam  = var.create_msk && var.msk_auth == "iam"
  msk_port = var.msk_auth == "iam" ? 9098 : 9096
  brokers = !var.create_msk ? join(",", var.kafka_brokers) : (
    local.msk_iam ? aws_msk_cluster.this[0].bootstrap_brokers_sasl_iam : aws_msk_cluster.this[0].bootstrap_brokers_sasl_scram
  )
  # With MSK IAM, every stage signs its Kafka login with its task role.
  kafka_auth   = local.msk_iam ? "msk-iam" : null
  kafka_region = local.msk_iam ? local.region : null

  # The loader's --warehouse when no secret is given: the Data API, by workgroup or cluster.
  redshift_compute = var.redshift_workgroup_name != "" ? "workgroup=${var.redshift_workgroup_name}" : "cluster=${var.redshift_cluster_identifier}"
  redshift_credentials = join("", [
    var.redshift_db_user != "" ? "&db_user=${var.redshift_db_user}" : "",
    var.redshift_secret_arn != "" ? "&secret_arn=${var.redshift_secret_arn}" : "",
  ])
  redshift_url = "redshift:///${var.redshift_database}?${local.redshift_compute}&region=${local.region}${local.redshift_credentials}"

  # Where each stage listens: ingest's API (and its /metrics), the /metrics of sink and load.
  # The listen addresses and HEALTHCHECK_PORT below repeat these numbers; the test suite
  # checks that they agree and match `exposures <stage> --help`.
  ports = {
    ingest = 8080
    sink   = 9464
    load   = 9465
  }

  sizes = {
    ingest = { cpu = var.ingest_cpu, memory = var.ingest_memory, count = var.ingest_desired_count }
    sink   = { cpu = var.sink_cpu, memory = var.sink_memory, count = var.sink_desired_count }
    load   = { cpu = var.load_cpu, memory = var.load_memory, count = var.load_desired_count }
  }

  # Plain settings of each container. Values are strings; null leaves the variable out.
  # HEALTHCHECK_* configure the image's probe (infra/healthcheck.sh): ingest answers
  # /healthz; sink and load serve only /metrics.
  environment = {
    ingest = {
      EXPOSURES_LISTEN          = "0.0.0.0:8080"
      EXPOSURES_BROKERS         = local.brokers
      EXPOSURES_KAFKA_AUTH      = local.kafka_auth
      EXPOSURES_KAFKA_REGION    = local.kafka_region
      EXPOSURES_TOPIC           = var.topic
      EXPOSURES_SPOOL_DIR       = "/var/lib/exposures/spool"
      EXPOSURES_NO_SPOOL        = var.ingest_spool ? null : "true"
      EXPOSURES_CORS_ORIGINS    = var.cors_origins
      EXPOSURES_FORWARDED_FOR   = var.forwarded_for
      EXPOSURES_RATE_LIMIT      = tostring(var.rate_limit)
      EXPOSURES_TRUSTED_PROXIES = data.aws_vpc.this.cidr_block
      EXPOSURES_LOG_FORMAT      = "json"
      HEALTHCHECK_PORT          = "8080"
      HEALTHCHECK_PATH          = "/healthz"
    }
    sink = {
      EXPOSURES_BROKERS        = local.brokers
      EXPOSURES_KAFKA_AUTH     = local.kafka_auth
      EXPOSURES_KAFKA_REGION   = local.kafka_region
      EXPOSURES_TOPIC          = var.topic
      EXPOSURES_FILES_TOPIC    = var.files_topic
      EXPOSURES_LAKE           = local.lake_url
      EXPOSURES_S3_REGION      = local.region
      EXPOSURES_FLUSH_INTERVAL = var.flush_interval
      EXPOSURES_METRICS_LISTEN = "0.0.0.0:9464"
      EXPOSURES_LOG_FORMAT     = "json"
      HEALTHCHECK_PORT         = "9464"
      HEALTHCHECK_PATH         = "/metrics"
    }
    load = {
      EXPOSURES_BROKERS        = local.brokers
      EXPOSURES_KAFKA_AUTH     = local.kafka_auth
      EXPOSURES_KAFKA_REGION   = local.kafka_region
      EXPOSURES_FILES_TOPIC    = var.files_topic
      EXPOSURES_LAKE           = local.lake_url
      EXPOSURES_SCHEMA         = var.warehouse_schema
      EXPOSURES_IAM_ROLE       = aws_iam_role.redshift_copy.arn
      EXPOSURES_S3_REGION      = local.region
      EXPOSURES_METRICS_LISTEN = "0.0.0.0:9465"
      EXPOSURES_LOG_FORMAT     = "json"
      HEALTHCHECK_PORT         = "9465"
      HEALTHCHECK_PATH         = "/metrics"
    }
  }

  # Secret settings, from Secrets Manager (ECS `secrets`); null leaves the variable out.
  # The Kafka properties secret: asked for, or needed for the stages' SCRAM login to MSK
  # (with MSK IAM there is no Kafka secret at all).
  kafka_properties     = var.kafka_properties_secret || (var.create_msk && var.msk_auth == "scram")
  kafka_properties_arn = local.kafka_properties ? aws_secretsmanager_secret.kafka_properties[0].arn : null
  warehouse_arn        = var.warehouse_secret_arn != "" ? var.warehouse_secret_arn : aws_secretsmanager_secret.warehouse[0].arn
  secrets = {
    ingest = {
      EXPOSURES_KAFKA_PROPERTIES = local.kafka_properties_arn
      EXPOSURES_WRITE_KEYS       = var.write_keys ? aws_secretsmanager_secret.write_keys[0].arn : null
      EXPOSURES_IP_HASH_SALT     = var.forwarded_for == "hash" ? aws_secretsmanager_secret.ip_hash_salt[0].arn : null
    }
    sink = {
      EXPOSURES_KAFKA_PROPERTIES = local.kafka_properties_arn
    }
    load = {
      EXPOSURES_KAFKA_PROPERTIES = local.kafka_properties_arn
      EXPOSURES_WAREHOUSE        = local.warehouse_arn
    }
  }

  # Which stages get secrets (known at plan time, unlike the secrets' ARNs).
  has_secrets = {
    ingest = local.kafka_properties || var.write_keys || var.forwarded_for == "hash"
    sink   = local.kafka_properties
    load   = true
  }

  # The KMS keys the execution roles decrypt secrets with.
  secret_kms_keys = compact([aws_kms_key.this.arn, var.warehouse_secret_kms_key_arn])

  # An image in ECR: its repository, which the execution roles may pull from.
  ecr_match      = try(regex("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com[^/]*/([^:@]+)", var.image), null)
  ecr_repository = local.ecr_match == null ? null : "arn:${local.partition}:ecr:${local.ecr_match[1]}:${local.ecr_match[0]}:repository/${local.ecr_match[2]}"
}

check "kafka" {
  assert {
    condition     = var.create_msk || length(var.kafka_brokers) > 0
    error_message = "Set kafka_brokers (and kafka_cidr_blocks), or create_msk = true."
  }
}

check "warehouse" {
  assert {
    condition     = var.warehouse_secret_arn != "" || var.redshift_workgroup_name != "" || var.redshift_cluster_identifier != ""
    error_message = "Set warehouse_secret_arn, redshift_workgroup_name or redshift_cluster_identifier."
  }
}

# ---------------------------------------------------------------------------------------
# One customer-managed key for the lake, the log groups, the secrets and MSK.
# ---------------------------------------------------------------------------------------

resource "aws_kms_key" "this" {
  description             = "${var.name}: lake objects, logs, secrets, MSK storage"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A key policy: its "*" resource is this key. The account statement is AWS's default, which hands access control to IAM policies.
  #checkov:skip=CKV_AWS_111:A key policy: its "*" resource is this key. The account statement is AWS's default, which hands access control to IAM policies.
  #checkov:skip=CKV_AWS_356:A key policy: its "*" resource is this key, nothing else.
  statement {
    sid       = "AccountAdministersTheKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptsThisAccountsLogGroups"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }
}

# ---------------------------------------------------------------------------------------
# Secrets. Terraform creates them empty; their values are put outside it, so they never
# reach the state (see README). A task starts once its secrets have a value.
# ---------------------------------------------------------------------------------------

resource "aws_secretsmanager_secret" "kafka_properties" {
  #checkov:skip=CKV2_AWS_57:Holds credentials issued by the Kafka operator (e.g. a SASL password); they rotate them, there is no rotation function to run here.
  count       = local.kafka_properties ? 1 : 0
  name        = "${var.name}/kafka-properties"
  description = "EXPOSURES_KAFKA_PROPERTIES for every stage: ;-separated librdkafka properties, e.g. security.protocol=SASL_SSL;sasl.mechanism=SCRAM-SHA-512;sasl.username=...;sasl.password=..."
  kms_key_id  = aws_kms_key.this.arn
}

resource "aws_secretsmanager_secret" "write_keys" {
  #checkov:skip=CKV2_AWS_57:Write keys are shipped inside the SDK callers' configuration; rotating them is a coordinated deploy of callers and ingest, not a Lambda.
  count       = var.write_keys ? 1 : 0
  name        = "${var.name}/write-keys"
  description = "EXPOSURES_WRITE_KEYS for ingest: comma-separated write keys."
  kms_key_id  = aws_kms_key.this.arn
}

resource "aws_secretsmanager_secret" "ip_hash_salt" {
  #checkov:skip=CKV2_AWS_57:Rotating the salt changes every hashed forwarded_for, breaking joins across the change; it is rotated deliberately, not on a schedule.
  count       = var.forwarded_for == "hash" ? 1 : 0
  name        = "${var.name}/ip-hash-salt"
  description = "EXPOSURES_IP_HASH_SALT for ingest: at least 16 bytes (openssl rand -hex 16)."
  kms_key_id  = aws_kms_key.this.arn
}

resource "aws_secretsmanager_secret" "warehouse" {
  #checkov:skip=CKV2_AWS_57:Holds the Redshift Data API URL built below, which carries no password (the Data API takes IAM or secret_arn credentials); nothing to rotate.
  count       = var.warehouse_secret_arn == "" ? 1 : 0
  name        = "${var.name}/warehouse"
  description = "EXPOSURES_WAREHOUSE for load: the Redshift Data API URL (no password in it)."
  kms_key_id  = aws_kms_key.this.arn
}

resource "aws_secretsmanager_secret_version" "warehouse" {
  count         = var.warehouse_secret_arn == "" ? 1 : 0
  secret_id     = aws_secretsmanager_secret.warehouse[0].id
  secret_string = local.redshift_url
}
