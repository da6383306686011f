//! Amazon MSK's IAM access control for every Kafka client (`--kafka-auth msk-iam`): SASL
//! `OAUTHBEARER` whose token is a presigned `kafka-cluster:Connect` request, signed with
//! the AWS default credential chain (task role, instance profile, SSO, environment), so
//! there is no Kafka password to create, store or rotate.
//!
//! The token is what AWS's own signers make (aws-msk-iam-sasl-signer-python 1.0.2,
//! `__construct_auth_token`): `GET https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect`
//! presigned with SigV4 query parameters for the service `kafka-cluster`, valid 900 s,
//! signing only `host`, then a `User-Agent` parameter, the whole URL base64url-encoded
//! without padding. The unit test compares ours with that library's, byte for byte.
//!
//! librdkafka asks for a token when a client starts and again before the current one
//! expires (at 80 % of its lifetime); it asks from whatever thread polls the client, often
//! a tokio worker. So credentials come from a thread of their own with its own small
//! runtime, which the SDK's credential cache lives on; a token is signed where it is asked
//! for. A failure is logged once per distinct message, and librdkafka asks again.

use std::error::Error;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use rdkafka::client::OAuthToken;

/// The librdkafka settings `--kafka-auth msk-iam` makes, which a --kafka-property may
/// repeat but not contradict.
pub(super) const SETTINGS: [(&str, &str); 2] = [
    ("security.protocol", "SASL_SSL"),
    ("sasl.mechanism", "OAUTHBEARER"),
];

/// The value of [`SETTINGS`] that the property `key=value` contradicts, if any
/// (`sasl.mechanisms` is librdkafka's alias of `sasl.mechanism`; values ignore case).
pub(super) fn contradicted(key: &str, value: &str) -> Option<&'static str> {
    let key = if key == "sasl.mechanisms" {
        "sasl.mechanism"
    } else {
        key
    };
    SETTINGS
        .iter()
        .find(|(setting, _)| *setting == key)
        .map(|(_, wanted)| *wanted)
        .filter(|wanted| !value.eq_ignore_ascii_case(wanted))
}

/// How long a token is valid, as AWS's signers make it.
const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// How long a token request waits for credentials before librdkafka is told to retry.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("exposures/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum MskIamError {
    #[error("no AWS region for MSK IAM: give --kafka-region or set AWS_REGION")]
    NoRegion,
    #[error("no AWS credentials for MSK IAM: {0}")]
    Credentials(String),
    #[error("cannot sign the MSK IAM token: {0}")]
    Signing(String),
}

/// A token and when it expires, in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedToken {
    pub token: String,
    pub expires_at_ms: i64,
}

/// The MSK IAM token for `credentials` in `region`, signed at `at`.
pub fn token(credentials: &Credentials, region: &str, at: SystemTime) -> Result<SignedToken, MskIamError> {
    let signing_error = |error: &dyn std::fmt::Display| MskIamError::Signing(error.to_string());
    let host = format!("kafka.{region}.amazonaws.com");
    let url = format!("https://{host}/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kafka-cluster")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| signing_error(&e))?
        .into();
    let request = SignableRequest::new(
        "GET",
        &url,
        std::iter::once(("host", host.as_str())),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| signing_error(&e))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| signing_error(&e))?
        .into_parts();
    let (_headers, mut query) = instructions.into_parts();
    // The signature last, as botocore writes it (the service reads the parameters by name).
    query.sort_by_key(|(name, _)| *name == "X-Amz-Signature");
    let mut signed = url;
    for (name, value) in query {
        signed.push('&');
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&percent_encode(&value));
    }
    signed.push_str("&User-Agent=");
    signed.push_str(&percent_encode(USER_AGENT));
    let signed_at = at
        .duration_since(UNIX_EPOCH)
        .map_err(|e| signing_error(&e))?
        .as_secs() as i64;
    Ok(SignedToken {
        token: base64url(signed.as_bytes()),
        expires_at_ms: (signed_at + TOKEN_LIFETIME.as_secs() as i64) * 1000,
    })
}

/// RFC 3986 unreserved characters kept, everything else `%XX` (what SigV4 and
/// botocore's URL encoding do).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => encoded.push(byte as char),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// Base64url without padding (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut encoded = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            encoded.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    encoded
}

/// The token a client context answers librdkafka with: `oauth`'s, or an error when the
/// client was not made for `--kafka-auth msk-iam` (librdkafka asks only when
/// `sasl.mechanism=OAUTHBEARER`, which that flag sets).
pub fn oauth_token(oauth: &Option<Arc<MskIam>>) -> Result<OAuthToken, Box<dyn Error>> {
    match oauth {
        Some(signer) => signer.oauth_token(),
        None => Err("OAUTHBEARER needs --kafka-auth msk-iam (or a token this program cannot make)".into()),
    }
}

/// The process's MSK IAM signer: the region, and the thread credentials come from.
pub struct MskIam {
    region: String,
    requests: Mutex<mpsc::Sender<mpsc::Sender<Result<Credentials, String>>>>,
    last_failure: Mutex<String>,
}

impl MskIam {
    /// The process's signer for `region` (`None`: the SDK's region chain), started on
    /// first use: every client of the process shares one credentials thread per region.
    pub fn of_region(region: Option<&str>) -> Result<Arc<MskIam>, MskIamError> {
        static SIGNERS: Mutex<Vec<(Option<String>, Arc<MskIam>)>> = Mutex::new(Vec::new());
        let mut signers = SIGNERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, signer)) = signers.iter().find(|(known, _)| known.as_deref() == region) {
            return Ok(signer.clone());
        }
        let signer = MskIam::start(region)?;
        signers.push((region.map(str::to_owned), signer.clone()));
        Ok(signer)
    }

    /// Starts the credentials thread, resolving the region (`region`, or the AWS SDK's
    /// chain: `AWS_REGION`, the profile, instance metadata).
    fn start(region: Option<&str>) -> Result<Arc<MskIam>, MskIamError> {
        let (requests, incoming) = mpsc::channel::<mpsc::Sender<Result<Credentials, String>>>();
        let (resolved, resolution) = mpsc::channel::<Option<String>>();
        let given = region.map(str::to_owned);
        std::thread::Builder::new()
            .name("msk-iam-credentials".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(_) => return,
                };
                runtime.block_on(async move {
                    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                    if let Some(region) = given {
                        loader = loader.region(aws_config::Region::new(region));
                    }
                    let config = loader.load().await;
                    let _ = resolved.send(config.region().map(|region| region.to_string()));
                    let provider = config.credentials_provider();
                    // Each request waits here; the SDK's cache answers most of them.
                    while let Ok(reply) = incoming.recv() {
                        let credentials = match &provider {
                            Some(provider) => provider.provide_credentials().await.map_err(|error| {
                                format!(
                                    "{error}: {}",
                                    error.source().map(ToString::to_string).unwrap_or_default()
                                )
                            }),
                            None => Err("the AWS SDK found no credentials provider".to_owned()),
                        };
                        let _ = reply.send(credentials);
                    }
                });
            })
            .map_err(|error| MskIamError::Credentials(error.to_string()))?;
        let region = resolution.recv().ok().flatten().ok_or(MskIamError::NoRegion)?;
        Ok(Arc::new(MskIam {
            region,
            requests: Mutex::new(requests),
            last_failure: Mutex::new(String::new()),
        }))
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// A token for librdkafka, or why not (logged once per distinct reason).
    pub fn oauth_token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        match self
            .credentials()
            .and_then(|credentials| token(&credentials, &self.region, SystemTime::now()))
        {
            Ok(signed) => {
                if let Ok(mut last) = self.last_failure.lock() {
                    last.clear();
                }
                Ok(OAuthToken {
                    token: signed.token,
                    principal_name: "msk-iam".to_owned(),
                    lifetime_ms: signed.expires_at_ms,
                })
            }
            Err(error) => {
                let message = error.to_string();
                if let Ok(mut last) = self.last_failure.lock() {
                    if *last != message {
                        tracing::error!(%message, "Kafka: no MSK IAM token (librdkafka retries)");
                        *last = message.clone();
                    }
                }
                Err(message.into())
            }
        }
    }

    fn credentials(&self) -> Result<Credentials, MskIamError> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .lock()
            .map_err(|_| MskIamError::Credentials("the credentials thread is gone".into()))?
            .send(reply)
            .map_err(|_| MskIamError::Credentials("the credentials thread is gone".into()))?;
        match answer.recv_timeout(CREDENTIALS_TIMEOUT) {
            Ok(credentials) => credentials.map_err(MskIamError::Credentials),
            Err(_) => Err(MskIamError::Credentials(format!(
                "none within {} s",
                CREDENTIALS_TIMEOUT.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// 2026-12-05T06:30:00Z.
    const SIGNED_AT: u64 = 1_796_452_200;

    fn decoded(token: &str) -> String {
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let values: Vec<u32> = token
            .chars()
            .map(|c| ALPHABET.find(c).expect("base64url") as u32)
            .collect();
        let mut bytes = Vec::new();
        for chunk in values.chunks(4) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, v)| n | v << (18 - 6 * i));
            for i in 0..chunk.len() - 1 {
                bytes.push((n >> (16 - 8 * i)) as u8);
            }
        }
        String::from_utf8(bytes).expect("a URL")
    }

    /// The same credentials and clock give the token AWS's Python signer gives
    /// (aws-msk-iam-sasl-signer-python 1.0.2's `__construct_auth_token` with botocore
    /// 1.43's clock fixed: `msk_iam_reference.py` beside this file), with and without a
    /// session token.
    #[test]
    fn tokens_are_what_aws_signers_make() {
        let url = |security_token: &str, signature: &str| {
            format!(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256\
                 &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261205%2Feu-west-1%2Fkafka-cluster%2Faws4_request\
                 &X-Amz-Date=20261205T063000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host{security_token}\
                 &X-Amz-Signature={signature}&User-Agent=exposures%2F{}",
                env!("CARGO_PKG_VERSION")
            )
        };
        let static_keys = |session: Option<&str>| {
            Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                session.map(str::to_owned),
                None,
                "test",
            )
        };
        let signed = token(&static_keys(None), "eu-west-1", at(SIGNED_AT)).expect("token");
        assert_eq!(
            decoded(&signed.token),
            url(
                "",
                "709f916883c175a57bc85b9f9cff3351eb5e667fbc112ab80d878c7fcc43c413"
            )
        );
        assert_eq!(signed.expires_at_ms, (SIGNED_AT as i64 + 900) * 1000);
        assert!(!signed.token.contains('=') && !signed.token.contains('+') && !signed.token.contains('/'));
        let with_session = token(
            &static_keys(Some("FwoGZXIvYXdzEXAMPLETOKEN")),
            "eu-west-1",
            at(SIGNED_AT),
        )
        .expect("token");
        assert_eq!(
            decoded(&with_session.token),
            url(
                "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLETOKEN",
                "f51987a12eff287ad865cddb6a2d21087effab4f1d3724cf47c2951211ec2e9f"
            )
        );
    }

    #[test]
    fn base64url_has_no_padding() {
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
