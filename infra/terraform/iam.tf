# Roles, least privilege per stage:
# - execution roles (one per stage): pull the image, write the stage's log group, read the
#   stage's secrets;
# - task roles: sink writes data and dead letters into the lake; load reads the lake,
#   writes COPY manifests and drives the Redshift Data API; with MSK IAM (msk_auth = "iam"),
#   each stage may also connect to the cluster and use its own topics and group, nothing
#   more;
# - the role Redshift assumes for COPY: read the lake, nothing else.

locals {
  stages = toset(["ingest", "sink", "load"])

  lake_objects = "${aws_s3_bucket.lake.arn}/${local.key_prefix}*"
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---------------------------------------------------------------------------------------
# Execution roles
# ---------------------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  for_each           = local.stages
  name               = "${var.name}-${each.key}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  for_each = local.stages

  statement {
    sid       = "WriteTheStagesLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.stage[each.key].arn}:*"]
  }

  dynamic "statement" {
    for_each = local.ecr_repository == null ? [] : [local.ecr_repository]
    content {
      sid       = "PullTheImage"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.ecr_repository == null ? [] : [local.ecr_repository]
    content {
      sid       = "LogInToEcr"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.has_secrets[each.key] ? [each.key] : []
    content {
      sid       = "ReadTheStagesSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = compact(values(local.secrets[each.key]))
    }
  }

  dynamic "statement" {
    for_each = local.has_secrets[each.key] ? [each.key] : []
    content {
      sid       = "DecryptTheStagesSecrets"
      actions   = ["kms:Decrypt"]
      resources = local.secret_kms_keys

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.stages
  name     = "${var.name}-${each.key}-execution"
  role     = aws_iam_role.execution[each.key].id
  policy   = data.aws_iam_policy_document.execution[each.key].json
}

# ---------------------------------------------------------------------------------------
# Task roles
# ---------------------------------------------------------------------------------------

# Ingest's has no policy but MSK IAM's: it talks to Kafka only.
resource "aws_iam_role" "task" {
  for_each           = local.stages
  name               = "${var.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "sink" {
  statement {
    sid = "WriteDataAndDeadLetters"
    actions = [
      "s3:PutObject",
      "s3:AbortMultipartUpload",
    ]
    resources = [
      "${aws_s3_bucket.lake.arn}/${local.key_prefix}exposures/*",
      "${aws_s3_bucket.lake.arn}/${local.key_prefix}feature_usage/*",
      "${aws_s3_bucket.lake.arn}/${local.key_prefix}events/*",
      "${aws_s3_bucket.lake.arn}/${local.key_prefix}_rejected/*",
    ]
  }

  # The first range a sink files after an assignment looks (HeadObject) for a file an
  # earlier owner wrote of a table that range lacks, to replace it: HeadObject needs
  # GetObject, and answers a missing object 404 rather than 403 only with ListBucket.
  statement {
    sid     = "FindEarlierFiles"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.lake.arn}/${local.key_prefix}exposures/*",
      "${aws_s3_bucket.lake.arn}/${local.key_prefix}feature_usage/*",
      "${aws_s3_bucket.lake.arn}/${local.key_prefix}events/*",
    ]
  }

  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
  }

  statement {
    sid       = "EncryptLakeObjects"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "sink" {
  name   = "${var.name}-sink-lake"
  role   = aws_iam_role.task["sink"].id
  policy = data.aws_iam_policy_document.sink.json
}

data "aws_iam_policy_document" "load" {
  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = [local.lake_objects]
  }

  # HeadObject on a missing object answers 404 (quarantined as missing) rather than 403
  # only with ListBucket, which HeadObject's request carries no s3:prefix for: the bucket
  # holds nothing but the lake.
  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
  }

  statement {
    sid       = "WriteCopyManifests"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.key_prefix}_manifests/*"]
  }

  statement {
    sid       = "LakeObjectsKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = local.redshift ? [1] : []
    content {
      sid       = "RunStatements"
      actions   = ["redshift-data:ExecuteStatement", "redshift-data:BatchExecuteStatement"]
      resources = [local.redshift_compute_arn]
    }
  }

  # Statements are addressed by id; these actions take no resource, only their owner.
  dynamic "statement" {
    for_each = local.redshift ? [1] : []
    content {
      sid       = "FollowOwnStatements"
      actions   = ["redshift-data:DescribeStatement", "redshift-data:GetStatementResult", "redshift-data:CancelStatement"]
      resources = ["*"]

      condition {
        test     = "StringEquals"
        variable = "redshift-data:statement-owner-iam-userid"
        values   = ["$${aws:userid}"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.redshift_workgroup_name != "" && var.redshift_secret_arn == "" ? [1] : []
    content {
      sid       = "ServerlessTemporaryCredentials"
      actions   = ["redshift-serverless:GetCredentials"]
      resources = [local.redshift_compute_arn]
    }
  }

  dynamic "statement" {
    for_each = var.redshift_workgroup_name == "" && var.redshift_cluster_identifier != "" && var.redshift_db_user != "" ? [1] : []
    content {
      sid     = "ClusterTemporaryCredentials"
      actions = ["redshift:GetClusterCredentials"]
      resources = [
        "arn:${local.partition}:redshift:${local.region}:${local.account_id}:dbuser:${var.redshift_cluster_identifier}/${var.redshift_db_user}",
        "arn:${local.partition}:redshift:${local.region}:${local.account_id}:dbname:${var.redshift_cluster_identifier}/${var.redshift_database}",
      ]
    }
  }

  dynamic "statement" {
    for_each = local.redshift && var.redshift_secret_arn != "" ? [1] : []
    content {
      sid       = "RedshiftUserSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [var.redshift_secret_arn]
    }
  }
}

# The Data API grants follow the redshift_* variables (also when the URL comes from
# warehouse_secret_arn); with PostgreSQL, leave them empty.
locals {
  redshift = var.redshift_workgroup_name != "" || var.redshift_cluster_identifier != ""
  redshift_compute_arn = (
    var.redshift_workgroup_name != ""
    ? one(data.aws_redshiftserverless_workgroup.this[*].arn)
    : "arn:${local.partition}:redshift:${local.region}:${local.account_id}:cluster:${var.redshift_cluster_identifier}"
  )
}

data "aws_redshiftserverless_workgroup" "this" {
  count          = var.redshift_workgroup_name != "" ? 1 : 0
  workgroup_name = var.redshift_workgroup_name
}

resource "aws_iam_role_policy" "load" {
  name   = "${var.name}-load-lake-and-warehouse"
  role   = aws_iam_role.task["load"].id
  policy = data.aws_iam_policy_document.load.json
}

# ---------------------------------------------------------------------------------------
# The role Redshift assumes for COPY (--iam-role). Associate it with the cluster or the
# Serverless namespace (README).
# ---------------------------------------------------------------------------------------

data "aws_iam_policy_document" "redshift_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["redshift.amazonaws.com", "redshift-serverless.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "redshift_copy" {
  name               = "${var.name}-redshift-copy"
  assume_role_policy = data.aws_iam_policy_document.redshift_assume.json
}

data "aws_iam_policy_document" "redshift_copy" {
  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = [local.lake_objects]
  }

  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.key_prefix}*"]
    }
  }

  statement {
    sid       = "DecryptLakeObjects"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "redshift_copy" {
  name   = "${var.name}-redshift-copy-lake"
  role   = aws_iam_role.redshift_copy.id
  policy = data.aws_iam_policy_document.redshift_copy.json
}

# ---------------------------------------------------------------------------------------
# MSK IAM (msk_auth = "iam"): what each stage's Kafka clients do, on the cluster's own
# resources ("IAM access control", Amazon MSK Developer Guide; resource ARNs
# arn:PARTITION:kafka:REGION:ACCOUNT:{cluster,topic,group}/CLUSTER-NAME/CLUSTER-UUID[/NAME]).
# ---------------------------------------------------------------------------------------

locals {
  msk_resource = local.msk_iam ? "arn:${local.partition}:kafka:${local.region}:${local.account_id}:%s/${var.name}/${aws_msk_cluster.this[0].cluster_uuid}%s" : null
  msk_cluster  = local.msk_iam ? aws_msk_cluster.this[0].arn : null
  msk_topic    = { for name, topic in { exposures = var.topic, files = var.files_topic } : name => local.msk_iam ? format(local.msk_resource, "topic", "/${topic}") : null }
  # The stages' consumer groups: their --group defaults (exposures sink/load --help).
  msk_group = { for stage, group in { sink = "exposures-sink", load = "exposures-load" } : stage => local.msk_iam ? format(local.msk_resource, "group", "/${group}") : null }

  # Per stage: [actions, resources] statements.
  msk_grants = {
    # The idempotent producer of exposures.
    ingest = [
      [["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"], [local.msk_cluster]],
      [["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"], [local.msk_topic["exposures"]]],
    ]
    # Consumes exposures in its group; announces files (an idempotent producer).
    sink = [
      [["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"], [local.msk_cluster]],
      [["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"], [local.msk_topic["exposures"]]],
      [["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"], [local.msk_topic["files"]]],
      [["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"], [local.msk_group["sink"]]],
    ]
    # Consumes the file announcements in its group.
    load = [
      [["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"], [local.msk_cluster]],
      [["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"], [local.msk_topic["files"]]],
      [["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"], [local.msk_group["load"]]],
    ]
  }
}

data "aws_iam_policy_document" "msk" {
  for_each = local.msk_iam ? local.stages : toset([])

  dynamic "statement" {
    for_each = local.msk_grants[each.key]
    content {
      actions   = statement.value[0]
      resources = statement.value[1]
    }
  }
}

resource "aws_iam_role_policy" "msk" {
  for_each = local.msk_iam ? local.stages : toset([])
  name     = "${var.name}-${each.key}-msk-iam"
  role     = aws_iam_role.task[each.key].id
  policy   = data.aws_iam_policy_document.msk[each.key].json
}
