# The lake: hour-partitioned Parquet written by the sink, dead letters beside it, and the
# loader's COPY manifests (PREFIX/_manifests/, expired by a lifecycle rule).

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:The lake is a buffer between Kafka and the warehouse, rebuilt from Kafka within its retention; a replica in another region is a choice for the owner, not a default.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events: the sink announces every file on the Kafka files topic, which is how the loader learns of it.
  #checkov:skip=CKV_AWS_18:Server access logging is opt-in (lake_access_logs_bucket): it needs a log bucket this module does not own.
  bucket = var.lake_bucket_name
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  # The manifests are read by COPY while their batch loads; a retried batch writes new ones.
  rule {
    id     = "expire-manifests"
    status = "Enabled"

    filter {
      prefix = "${local.key_prefix}_manifests/"
    }

    expiration {
      days = var.manifest_expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # A sink that restarts rewrites the same keys; the versions it replaces are kept a while.
  rule {
    id     = "noncurrent-versions-and-failed-uploads"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.lake]
}

resource "aws_s3_bucket_logging" "lake" {
  count         = var.lake_access_logs_bucket == "" ? 0 : 1
  bucket        = aws_s3_bucket.lake.id
  target_bucket = var.lake_access_logs_bucket
  target_prefix = "s3/${var.lake_bucket_name}/"
}

# TLS only.
resource "aws_s3_bucket_policy" "lake" {
  bucket     = aws_s3_bucket.lake.id
  policy     = data.aws_iam_policy_document.lake_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.lake]
}

data "aws_iam_policy_document" "lake_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}
