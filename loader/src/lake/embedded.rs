//! An S3-protocol server over a local directory (s3s + s3s-fs), so `exposures up` and
//! the tests write the lake through the same aws-sdk-s3 code path as production.
//! Bucket `B` is the directory `ROOT/B`; objects are plain files under it, readable by
//! DuckDB or pyarrow directly.
//!
//! s3s-fs writes each object to a temporary file and renames it into place, so a
//! reader never sees half an object; it does not fsync, so the embedded lake survives
//! a killed process but not a power loss. Production lakes are real S3.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::LakeArgs;

/// The credentials the embedded server accepts (it serves only this machine's loopback).
pub const ACCESS_KEY: &str = "exposures";
pub const SECRET_KEY: &str = "exposures-embedded";

pub struct EmbeddedS3 {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl EmbeddedS3 {
    /// `http://ADDRESS`, for `AwsOptions::endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The flags that reach the lake `url` on this server.
    pub fn lake_args(&self, url: &str) -> LakeArgs {
        lake_args(url, &self.endpoint())
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The flags that reach the lake `url` on the server at `endpoint` (`http://ADDRESS`),
/// with the credentials it accepts.
pub fn lake_args(url: &str, endpoint: &str) -> LakeArgs {
    LakeArgs {
        url: url.to_owned(),
        s3_endpoint: Some(endpoint.to_owned()),
        s3_region: Some("us-east-1".into()),
        s3_static_credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
    }
}

/// Serves `root` on `listen` (port 0 picks a free one), creating `bucket` under it.
pub async fn serve(root: &Path, bucket: &str, listen: SocketAddr) -> std::io::Result<EmbeddedS3> {
    std::fs::create_dir_all(root.join(bucket))?;
    let filesystem = s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let mut service = S3ServiceBuilder::new(filesystem);
    service.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = service.build();
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let http = ConnectionBuilder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let connection = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    Ok(EmbeddedS3 { address, task })
}
