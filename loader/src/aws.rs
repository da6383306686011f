//! How the loader reaches AWS services (S3 for the lake, the Redshift Data API): one
//! shared SDK configuration, with the overrides tests and local setups need.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;

/// How to reach an AWS API (all optional: the default AWS chain is used otherwise).
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Endpoint override (MinIO, LocalStack, the embedded server, an emulator).
    pub endpoint: Option<String>,
    /// Region when the AWS chain has none.
    pub region: Option<String>,
    /// Static credentials instead of the AWS chain (the embedded server, tests).
    pub static_credentials: Option<(String, String)>,
}

/// The SDK configuration for `options`; the region falls back to us-east-1 when neither
/// the options nor the environment name one.
pub async fn sdk_config(options: &AwsOptions) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = &options.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &options.region {
        // Named up front, so the region chain (which may probe EC2 metadata) is skipped.
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some((access_key, secret_key)) = &options.static_credentials {
        loader =
            loader.credentials_provider(Credentials::new(access_key, secret_key, None, None, "exposures"));
    }
    let shared = loader.load().await;
    if shared.region().is_some() {
        shared
    } else {
        shared.into_builder().region(Region::new("us-east-1")).build()
    }
}

/// How to reach the lake's S3 API: flags shared by `sink`, `load` and `status`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LakeArgs {
    /// S3 endpoint override (MinIO, LocalStack); implies path-style addressing.
    #[arg(long, env = "EXPOSURES_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region when the AWS environment names none [default: us-east-1].
    #[arg(long, env = "EXPOSURES_S3_REGION")]
    pub s3_region: Option<String>,

    /// Static S3 credentials (the embedded server, tests); the AWS chain is used when absent.
    #[arg(skip)]
    pub s3_static_credentials: Option<(String, String)>,
}

impl LakeArgs {
    pub fn aws_options(&self) -> AwsOptions {
        AwsOptions {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            static_credentials: self.s3_static_credentials.clone(),
        }
    }
}
