//! The lake: where Parquet objects live. `s3://bucket/prefix` through aws-sdk-s3 (the
//! production path, also used by `exposures up` against an embedded S3-protocol server),
//! or `file:///dir` with the same key layout. Nothing else in the project touches S3.

use std::path::PathBuf;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use schemas::lake_layout::{check_key, KeyOutsideLake};
use stage::Retry;

pub use crate::aws::{AwsOptions, LakeArgs};
use local::{list_local, local_etag, put_local};
use s3::{put_multipart, s3_client, s3_error, s3_get};

pub mod embedded;
mod local;
mod s3;

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

impl LakeArgs {
    /// Opens the lake these flags name.
    pub async fn open(&self) -> Result<Lake, LakeError> {
        Lake::open(&self.url, &self.aws_options()).await
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
                // A HEAD answer has no body, so a refusal carries no error code to tell it
                // from a passing failure; its status does.
                Err(error) if error.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
                    Err(LakeError::S3 {
                        operation: "HeadObject",
                        bucket: bucket.clone(),
                        key: key.to_owned(),
                        message: "403 Forbidden: the role needs s3:GetObject on the key, and s3:ListBucket \
                              on the bucket for a missing key to answer 404"
                            .to_owned(),
                        retry: Retry::Permanent,
                    })
                }
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
