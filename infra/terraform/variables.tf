# ---------------------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (cluster, roles, log groups, secrets, load balancer)."
  type        = string
  default     = "exposures"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2 to 21 lowercase letters, digits or hyphens, starting with a letter (it prefixes the load balancer name, at most 32 characters)."
  }
}

variable "region" {
  description = "AWS region of every resource (the lake, ECS, Redshift's Data API calls)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource (on top of Application = var.name)."
  type        = map(string)
  default     = {}
}

variable "image" {
  description = "Container image of exposures built from infra/Dockerfile, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/exposures:0.1.0. When it is in ECR, the execution roles may pull from that repository only."
  type        = string
}

variable "cpu_architecture" {
  description = "CPU architecture of the image and the Fargate tasks: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture: X86_64 or ARM64."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the stages' logs (and MSK's broker logs)."
  type        = number
  default     = 365
}

# ---------------------------------------------------------------------------------------
# Network (bring your own VPC)
# ---------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the tasks, the load balancer and (if created) MSK."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the tasks (and of MSK's brokers). They reach S3, Secrets Manager, CloudWatch Logs, ECR and the Redshift Data API through a NAT gateway or VPC endpoints."
  type        = list(string)
}

variable "alb_subnet_ids" {
  description = "Subnets of the load balancer in front of ingest: public subnets for an internet-facing one, private ones when alb_internal is true."
  type        = list(string)
}

variable "alb_internal" {
  description = "Whether the load balancer is internal (backend SDKs only). Browsers (Next.js) need an internet-facing one."
  type        = bool
  default     = false
}

variable "alb_ingress_cidr_blocks" {
  description = "Client address ranges allowed to reach the load balancer (HTTPS, and HTTP which only redirects)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener (the host name the SDKs post to)."
  type        = string
}

variable "alb_ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "alb_deletion_protection" {
  description = "Deletion protection of the load balancer."
  type        = bool
  default     = true
}

variable "alb_access_logs_bucket" {
  description = "S3 bucket for the load balancer's access logs (it needs the ELB log-delivery bucket policy). Empty: no access logs."
  type        = string
  default     = ""
}

variable "waf_web_acl_arn" {
  description = "ARN of a WAFv2 web ACL to associate with the load balancer. Empty: none. Its rules must allow request bodies up to --max-batch-bytes (8 MiB) on /v1/exposures."
  type        = string
  default     = ""
}

variable "metrics_cidr_blocks" {
  description = "Address ranges (your Prometheus) allowed to scrape /metrics: port 8080 on ingest, 9464 on sink, 9465 on load. Empty: none."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------------------
# Kafka: your brokers, or an MSK cluster created here
# ---------------------------------------------------------------------------------------

variable "kafka_brokers" {
  description = "Bootstrap servers (host:port) of an existing Kafka cluster. Leave empty when create_msk is true."
  type        = list(string)
  default     = []
}

variable "kafka_cidr_blocks" {
  description = "Address ranges of the existing Kafka brokers (the tasks' egress to kafka_port). Not used with create_msk."
  type        = list(string)
  default     = []
}

variable "kafka_port" {
  description = "Port of the existing Kafka brokers. Not used with create_msk (its IAM port 9098, or SASL/SCRAM port 9096)."
  type        = number
  default     = 9092
}

variable "kafka_properties_secret" {
  description = "Whether to create a Secrets Manager secret whose value is passed to every stage as EXPOSURES_KAFKA_PROPERTIES (`;`-separated librdkafka properties, e.g. security.protocol=SASL_SSL and SASL credentials). Its value is put outside Terraform (see README). Always created with create_msk and msk_auth = \"scram\"."
  type        = bool
  default     = false
}

variable "create_msk" {
  description = "Create an MSK cluster in private_subnet_ids (TLS, authenticated by IAM or SASL/SCRAM: msk_auth; see README) instead of using kafka_brokers."
  type        = bool
  default     = false
}

variable "msk_auth" {
  description = "How the stages authenticate to the MSK cluster (create_msk): \"iam\" (IAM access control, port 9098: the task roles are the identities, no Kafka password anywhere; the stages run with --kafka-auth msk-iam) or \"scram\" (SASL/SCRAM, port 9096: a password in two secrets, see README)."
  type        = string
  default     = "iam"

  validation {
    condition     = contains(["iam", "scram"], var.msk_auth)
    error_message = "msk_auth is \"iam\" or \"scram\"."
  }
}

variable "msk_associate_scram_secret" {
  description = "With msk_auth = \"scram\": associate the SCRAM secret AmazonMSK_NAME with the MSK cluster. Set it on a second apply, once that secret holds its {\"username\",\"password\"} value (see README); until then no client can log in."
  type        = bool
  default     = false
}

variable "msk_kafka_version" {
  description = "Kafka version of the MSK cluster."
  type        = string
  default     = "3.8.x"
}

variable "msk_instance_type" {
  description = "Broker instance type of the MSK cluster."
  type        = string
  default     = "kafka.m7g.large"
}

variable "msk_broker_count" {
  description = "Brokers of the MSK cluster: a multiple of the number of private subnets (one subnet per availability zone)."
  type        = number
  default     = 3
}

variable "msk_volume_size_gib" {
  description = "EBS storage per MSK broker, in GiB."
  type        = number
  default     = 100
}

variable "topic" {
  description = "Kafka topic of exposures (created outside Terraform, see README)."
  type        = string
  default     = "exposures"
}

variable "files_topic" {
  description = "Kafka topic the sink announces files on (created outside Terraform, see README)."
  type        = string
  default     = "exposures.files"
}

# ---------------------------------------------------------------------------------------
# The lake (S3)
# ---------------------------------------------------------------------------------------

variable "lake_bucket_name" {
  description = "Name of the S3 bucket created for the lake (globally unique)."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake in the bucket, without slashes at either end (the sink writes s3://BUCKET/PREFIX/exposures/v1/...). Empty: the bucket's root."
  type        = string
  default     = "lake"

  validation {
    condition     = var.lake_prefix == "" || can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.lake_prefix))
    error_message = "lake_prefix: key segments separated by single slashes, no slash at either end."
  }
}

variable "manifest_expiration_days" {
  description = "Days after which the loader's COPY manifests (PREFIX/_manifests/) expire. They are used only while their batch loads."
  type        = number
  default     = 7
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted lake object's old version is kept (the bucket is versioned; a sink that restarts rewrites the same keys)."
  type        = number
  default     = 30
}

variable "lake_access_logs_bucket" {
  description = "S3 bucket receiving the lake bucket's server access logs. Empty: no access logs."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------------------------------
# The warehouse
# ---------------------------------------------------------------------------------------

variable "warehouse_secret_arn" {
  description = "ARN of an existing Secrets Manager secret whose value is the loader's --warehouse URL (a postgres:// URL with its password, or any redshift:// URL). Empty: the URL is built from the redshift_* variables."
  type        = string
  default     = ""
}

variable "warehouse_secret_kms_key_arn" {
  description = "KMS key encrypting warehouse_secret_arn when it is not the AWS-managed key. Empty: the AWS-managed key."
  type        = string
  default     = ""
}

variable "redshift_workgroup_name" {
  description = "Redshift Serverless workgroup the loader writes to through the Data API. Set this or redshift_cluster_identifier (unless warehouse_secret_arn is set)."
  type        = string
  default     = ""
}

variable "redshift_cluster_identifier" {
  description = "Provisioned Redshift cluster the loader writes to through the Data API (with redshift_db_user or redshift_secret_arn)."
  type        = string
  default     = ""
}

variable "redshift_database" {
  description = "Redshift database of the exposures table."
  type        = string
  default     = "dev"
}

variable "redshift_db_user" {
  description = "Provisioned cluster: the database user the loader gets temporary credentials for (redshift:GetClusterCredentials). Empty: use redshift_secret_arn or (Serverless) the loader's IAM identity."
  type        = string
  default     = ""
}

variable "redshift_secret_arn" {
  description = "Secrets Manager secret with the Redshift user's credentials, passed to the Data API as secret_arn. Empty: temporary credentials (db_user, or Serverless IAM)."
  type        = string
  default     = ""
}

variable "warehouse_schema" {
  description = "Warehouse schema of the exposures table, the loader's ledger and the GrowthBook views."
  type        = string
  default     = "analytics"
}

# ---------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------

variable "ingest_desired_count" {
  description = "Tasks of ingest behind the load balancer."
  type        = number
  default     = 2
}

variable "ingest_cpu" {
  description = "CPU units of an ingest task."
  type        = number
  default     = 512
}

variable "ingest_memory" {
  description = "Memory of an ingest task, in MiB (ingest holds at most --max-inflight-bytes, 64 MiB, of requests)."
  type        = number
  default     = 1024
}

variable "ingest_ephemeral_storage_gib" {
  description = "Ephemeral storage of an ingest task, in GiB (its spool lives there, up to --spool-max-bytes, 1 GiB): 20 (Fargate's default) to 200."
  type        = number
  default     = 21

  validation {
    condition     = var.ingest_ephemeral_storage_gib >= 20 && var.ingest_ephemeral_storage_gib <= 200
    error_message = "ingest_ephemeral_storage_gib: 20 to 200."
  }
}

variable "ingest_spool" {
  description = "Whether ingest spools events Kafka does not acknowledge in time (answering 200). On Fargate the spool lives only as long as its task (see README, The spool on Fargate); false answers 503 instead (--no-spool)."
  type        = bool
  default     = true
}

variable "cors_origins" {
  description = "Comma-separated browser origins allowed to post (--cors-origins), or * for any."
  type        = string
  default     = "*"
}

variable "forwarded_for" {
  description = "Policy for the forwarded_for attribute (--forwarded-for): keep, truncate, hash or drop. hash creates a secret for the salt (EXPOSURES_IP_HASH_SALT)."
  type        = string
  default     = "keep"

  validation {
    condition     = contains(["keep", "truncate", "hash", "drop"], var.forwarded_for)
    error_message = "forwarded_for: keep, truncate, hash or drop."
  }
}

variable "write_keys" {
  description = "Whether ingest requires write keys: creates a secret whose value (comma-separated keys) is passed as EXPOSURES_WRITE_KEYS."
  type        = bool
  default     = false
}

variable "rate_limit" {
  description = "Requests per second allowed per client (--rate-limit); 0 turns the limit off."
  type        = number
  default     = 0
}

variable "sink_desired_count" {
  description = "Tasks of the sink (one consumer group; at most one per partition of the exposures topic does work)."
  type        = number
  default     = 1
}

variable "sink_cpu" {
  description = "CPU units of a sink task."
  type        = number
  default     = 1024
}

variable "sink_memory" {
  description = "Memory of a sink task, in MiB (up to --max-file-bytes, 128 MiB, per assigned partition)."
  type        = number
  default     = 2048
}

variable "flush_interval" {
  description = "How long a Parquet file stays open at most (--flush-interval)."
  type        = string
  default     = "60s"
}

variable "load_desired_count" {
  description = "Tasks of the loader (the files topic has one partition: one loader works, others stand by)."
  type        = number
  default     = 1
}

variable "load_cpu" {
  description = "CPU units of a load task."
  type        = number
  default     = 512
}

variable "load_memory" {
  description = "Memory of a load task, in MiB."
  type        = number
  default     = 1024
}
