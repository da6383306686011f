//! The lake: where Parquet objects live. `s3://bucket/prefix` through aws-sdk-s3 (the
//! production path, also used by `exposures up` against an embedded S3-protocol server),
//! or `file:///dir` with the same key layout. Nothing else in the project touches S3.

use std::path::{Path, PathBuf};

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use schemas::lake_layout::{check_key, KeyOutsideLake};
use stage::Retry;

use crate::aws::AwsFailure;

pub use crate::aws::{AwsOptions, LakeArgs};

pub mod embedded;

/// Objects at least this large are uploaded in parts.
const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{0}")]
    BadKey(#[from] KeyOutsideLake),
    #[error("object {0} is not in the lake (deleted, or never written)")]
    Missing(String),
    #[error("the file record names {what}, which is not in this loader's lake {lake}")]
    Foreign { what: String, lake: String },
    #[error("unsupported lake URL '{0}': use s3://BUCKET[/PREFIX] or file:///ABSOLUTE/DIR")]
    BadUrl(String),
    #[error("S3 {operation} of s3://{bucket}/{key} failed: {message}")]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        message: String,
        retry: Retry,
    },
    #[error("{operation} of {path} failed: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LakeError {
    /// An outage of the store (S3 5xx, a timeout, a full disk) is transient; a refusal
    /// (access, a bucket that does not exist), a key or URL that is wrong, or an object
    /// that is gone is permanent.
    pub fn retry(&self) -> Retry {
        match self {
            LakeError::BadKey(_)
            | LakeError::Missing(_)
            | LakeError::Foreign { .. }
            | LakeError::BadUrl(_) => Retry::Permanent,
            LakeError::S3 { retry, .. } => *retry,
            LakeError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    Retry::Permanent
                }
                _ => Retry::Transient,
            },
        }
    }
}

/// An object as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

/// An object as listed: its key, size and when it was last written (if the store says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone)]
enum Store {
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
    Local {
        root: PathBuf,
    },
}

#[derive(Clone)]
pub struct Lake {
    store: Store,
    prefix: String,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Lake {
    /// Opens the lake at `url`: `s3://bucket[/prefix]` or `file:///dir`.
    pub async fn open(url: &str, options: &AwsOptions) -> Result<Lake, LakeError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::BadUrl(url.to_owned()));
            }
            Ok(Lake {
                store: Store::S3 {
                    client: s3_client(options).await,
                    bucket: bucket.to_owned(),
                },
                prefix: prefix.trim_matches('/').to_owned(),
            })
        } else if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(LakeError::BadUrl(url.to_owned()));
            }
            Ok(Lake {
                store: Store::Local {
                    root: PathBuf::from(path),
                },
                prefix: String::new(),
            })
        } else {
            Err(LakeError::BadUrl(url.to_owned()))
        }
    }

    /// `s3://bucket/prefix` or `file:///dir`, for logs and file records.
    pub fn describe(&self) -> String {
        match &self.store {
            Store::S3 { bucket, .. } if self.prefix.is_empty() => format!("s3://{bucket}"),
            Store::S3 { bucket, .. } => format!("s3://{bucket}/{}", self.prefix),
            Store::Local { root } => format!("file://{}", root.display()),
        }
    }

    /// The bucket (or local root) objects are written to.
    pub fn bucket(&self) -> String {
        match &self.store {
            Store::S3 { bucket, .. } => bucket.clone(),
            Store::Local { root } => root.display().to_string(),
        }
    }

    /// The full object key for a key relative to the lake's prefix.
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// Writes `body` at `key` (a full key), replacing any object there. Visible only
    /// once complete: S3 puts are atomic; local files are written aside, synced and renamed.
    pub async fn put(&self, key: &str, body: Bytes) -> Result<StoredObject, LakeError> {
        let size = body.len() as u64;
        let etag = match &self.store {
            Store::S3 { client, bucket } => {
                if body.len() >= MULTIPART_THRESHOLD {
                    put_multipart(client, bucket, key, body).await?
                } else {
                    let output = client
                        .put_object()
                        .bucket(bucket)
                        .key(key)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .map_err(|e| s3_error("PutObject", bucket, key, e))?;
                    output.e_tag().unwrap_or_default().trim_matches('"').to_owned()
                }
            }
            Store::Local { root } => {
                check_key(key)?;
                put_local(root, key, body).await?
            }
        };
        Ok(StoredObject {
            key: key.to_owned(),
            etag,
            size,
        })
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, LakeError> {
        match &self.store {
            Store::S3 { client, bucket } => s3_get(client, bucket, key, None).await,
            Store::Local { root } => {
                check_key(key)?;
                let path = root.join(key);
                tokio::fs::read(&path)
                    .await
                    .map(Bytes::from)
                    .map_err(|source| match source.kind() {
                        std::io::ErrorKind::NotFound => LakeError::Missing(key.to_owned()),
                        _ => LakeError::Io {
                            operation: "read",
                            path,
                            source,
                        },
                    })
            }
        }
    }

    /// Whether object `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, LakeError> {
        match &self.store {
            Store::S3 { client, bucket } => match client.head_object().bucket(bucket).key(key).send().await {
                Ok(_) => Ok(true),
                Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
                Err(error) => Err(s3_error("HeadObject", bucket, key, error)),
            },
            Store::Local { root } => {
                check_key(key)?;
                Ok(tokio::fs::try_exists(root.join(key)).await.unwrap_or(false))
            }
        }
    }

    /// Keys under `prefix` (a full key prefix), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        Ok(self
            .list_objects(prefix)
            .await?
            .into_iter()
            .map(|object| object.key)
            .collect())
    }
}

impl Lake {
    /// Objects under `prefix` (a full key prefix) with size and last-modified time,
    /// sorted by key.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ListedObject>, LakeError> {
        let mut objects = Vec::new();
        match &self.store {
            Store::S3 { client, bucket } => {
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| s3_error("ListObjectsV2", bucket, prefix, e))?;
                    objects.extend(page.contents().iter().filter_map(|o| {
                        Some(ListedObject {
                            key: o.key()?.to_owned(),
                            size: o.size().unwrap_or(0).max(0) as u64,
                            last_modified: o
                                .last_modified()
                                .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                        })
                    }));
                }
            }
            Store::Local { root } => {
                let mut keys = Vec::new();
                list_local(root, root, &mut keys)?;
                for key in keys {
                    let metadata = std::fs::metadata(root.join(&key)).ok();
                    objects.push(ListedObject {
                        size: metadata.as_ref().map_or(0, std::fs::Metadata::len),
                        last_modified: metadata
                            .and_then(|m| m.modified().ok())
                            .map(chrono::DateTime::<chrono::Utc>::from),
                        key,
                    });
                }
            }
        }
        objects.retain(|o| o.key.starts_with(prefix) && !o.key.ends_with(".tmp"));
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Size and etag of object `key` as [`Lake::put`] reported them (S3: HeadObject;
    /// local: computed from the bytes); `None` if there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<StoredObject>, LakeError> {
        match &self.store {
            Store::S3 { client, bucket } => match client.head_object().bucket(bucket).key(key).send().await {
                Ok(output) => Ok(Some(StoredObject {
                    key: key.to_owned(),
                    etag: output.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                    size: output.content_length().unwrap_or(0).max(0) as u64,
                })),
                Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
                Err(error) => Err(s3_error("HeadObject", bucket, key, error)),
            },
            Store::Local { .. } => match self.get(key).await {
                Ok(body) => Ok(Some(StoredObject {
                    key: key.to_owned(),
                    etag: local_etag(&body),
                    size: body.len() as u64,
                })),
                Err(LakeError::Missing(_)) => Ok(None),
                Err(error) => Err(error),
            },
        }
    }

    /// The last `length` bytes of object `key` of `size` bytes (all of it if it is
    /// shorter): enough to read a Parquet footer without fetching the whole file.
    pub async fn get_tail(&self, key: &str, size: u64, length: u64) -> Result<Bytes, LakeError> {
        match &self.store {
            Store::S3 { .. } if size == 0 => Ok(Bytes::new()),
            // An explicit range: not every S3-protocol server takes a suffix range longer
            // than the object.
            Store::S3 { client, bucket } => {
                let range = format!("bytes={}-{}", size.saturating_sub(length), size - 1);
                s3_get(client, bucket, key, Some(range)).await
            }
            Store::Local { .. } => {
                let body = self.get(key).await?;
                let start = body
                    .len()
                    .saturating_sub(usize::try_from(length).unwrap_or(usize::MAX));
                Ok(body.slice(start..))
            }
        }
    }
}

async fn s3_client(options: &AwsOptions) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&crate::aws::sdk_config(options).await)
        .force_path_style(options.endpoint.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// GetObject of `key` (bytes `range` of it, if given); a missing key is
/// [`LakeError::Missing`].
async fn s3_get(
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

fn s3_error<E: AwsFailure>(operation: &'static str, bucket: &str, key: &str, error: E) -> LakeError {
    LakeError::S3 {
        operation,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        retry: error.retry(),
        message: DisplayErrorContext(error).to_string(),
    }
}

async fn put_multipart(
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

async fn put_local(root: &Path, key: &str, body: Bytes) -> Result<String, LakeError> {
    let root = root.to_path_buf();
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let path = root.join(&key);
        let io = |operation: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| LakeError::Io {
                operation,
                path,
                source,
            }
        };
        let dir = path.parent().unwrap_or(&root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let tmp = path.with_extension("parquet.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&body)
            .and_then(|()| file.sync_all())
            .map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &dir))?;
        Ok(local_etag(&body))
    })
    .await
    .unwrap_or_else(|join| {
        Err(LakeError::Io {
            operation: "write",
            path: PathBuf::new(),
            source: std::io::Error::other(join.to_string()),
        })
    })
}

/// The etag of a local object: its CRC-32 and length (what [`Lake::put`] returns).
fn local_etag(body: &[u8]) -> String {
    format!("{:08x}-{}", crc32fast::hash(body), body.len())
}

fn list_local(root: &Path, dir: &Path, keys: &mut Vec<String>) -> Result<(), LakeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(LakeError::Io {
                operation: "list",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            list_local(root, &path, keys)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            keys.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}
