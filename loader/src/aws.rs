//! How the loader reaches AWS services (S3 for the lake, the Redshift Data API): one
//! shared SDK configuration, with the overrides tests and local setups need.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use stage::Retry;

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

/// A failed AWS call, and whether retrying it may succeed. The SDK has already retried
/// throttling and 5xx answers by then (standard retry mode).
pub trait AwsFailure: std::error::Error + Send + Sync + 'static {
    fn retry(&self) -> Retry;
}

/// Error codes of S3 and the Redshift Data API that no retry fixes: access refused,
/// credentials the service does not know, a bucket that does not exist or is in another
/// region.
const PERMANENT_CODES: [&str; 12] = [
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "NotSignedUp",
    "AccessDeniedException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "NoSuchBucket",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
];

/// Whether a service error code is one of [`PERMANENT_CODES`].
pub fn permanent_code(code: Option<&str>) -> Retry {
    match code {
        Some(code) if PERMANENT_CODES.contains(&code) => Retry::Permanent,
        _ => Retry::Transient,
    }
}

impl<E, R> AwsFailure for SdkError<E, R>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    /// A request that could not be built is permanent, a service error by its code;
    /// timeouts, dispatch failures and unreadable answers are transient.
    fn retry(&self) -> Retry {
        match self {
            SdkError::ConstructionFailure(_) => Retry::Permanent,
            SdkError::ServiceError(service) => permanent_code(service.err().code()),
            _ => Retry::Transient,
        }
    }
}

impl AwsFailure for aws_sdk_s3::primitives::ByteStreamError {
    /// The body of an answer broke off mid-way.
    fn retry(&self) -> Retry {
        Retry::Transient
    }
}

/// Which lake, and how to reach its S3 API: the flags of `sink`, `load` and `reconcile`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LakeArgs {
    /// The lake: s3://BUCKET[/PREFIX] or file:///ABSOLUTE/DIR. `load` and `reconcile` take
    /// the sink's: the loader reads only files announced in it, and quarantines a file
    /// record naming another bucket or prefix with the reason (the files topic is data,
    /// not orders).
    #[arg(id = "lake", long = "lake", value_name = "URL", env = "EXPOSURES_LAKE")]
    pub url: String,

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_permanent_and_everything_else_transient() {
        for code in [
            "AccessDenied",
            "AccessDeniedException",
            "NoSuchBucket",
            "SignatureDoesNotMatch",
        ] {
            assert_eq!(permanent_code(Some(code)), Retry::Permanent, "{code}");
        }
        for code in [
            Some("SlowDown"),
            Some("ThrottlingException"),
            Some("InternalError"),
            None,
        ] {
            assert_eq!(permanent_code(code), Retry::Transient, "{code:?}");
        }
    }
}
