//! The lake on S3 (or an S3-protocol server): the client, reads (whole or a range),
//! multipart uploads, and errors that say whether a retry can help.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::{LakeError, PART_SIZE};
use crate::aws::{AwsFailure, AwsOptions};

pub(super) async fn s3_client(options: &AwsOptions) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&crate::aws::sdk_config(options).await)
        .force_path_style(options.endpoint.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// GetObject of `key` (bytes `range` of it, if given); a missing key is
/// [`LakeError::Missing`].
pub(super) async fn s3_get(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    range: Option<String>,
) -> Result<Bytes, LakeError> {
    let output = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(service) if service.is_no_such_key() => LakeError::Missing(key.to_owned()),
            _ => s3_error("GetObject", bucket, key, e),
        })?;
    let data = output
        .body
        .collect()
        .await
        .map_err(|e| s3_error("GetObject", bucket, key, e))?;
    Ok(data.into_bytes())
}

pub(super) fn s3_error<E: AwsFailure>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    error: E,
) -> LakeError {
    LakeError::S3 {
        operation,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        retry: error.retry(),
        message: DisplayErrorContext(error).to_string(),
    }
}

pub(super) async fn put_multipart(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Bytes,
) -> Result<String, LakeError> {
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error("CreateMultipartUpload", bucket, key, e))?;
    let upload_id = upload.upload_id().unwrap_or_default().to_owned();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let end = (start + PART_SIZE).min(body.len());
        let number = parts.len() as i32 + 1;
        let result = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body.slice(start..end)))
            .send()
            .await;
        let part = match result {
            Ok(part) => part,
            Err(error) => {
                // Leave no orphaned parts behind (they are billed until aborted).
                let _ = client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(s3_error("UploadPart", bucket, key, error));
            }
        };
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(str::to_owned))
                .build(),
        );
        start = end;
    }
    let completed = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .map_err(|e| s3_error("CompleteMultipartUpload", bucket, key, e))?;
    Ok(completed.e_tag().unwrap_or_default().trim_matches('"').to_owned())
}
