//! Which Redshift to load: the `redshift://` warehouse URL, parsed into the compute
//! (Serverless workgroup or provisioned cluster), database, credentials and region the
//! Data API wants. Errors say what to write instead.

use std::collections::HashMap;

use crate::load::LoadError;

/// Which Redshift to load, from a `redshift://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedshiftTarget {
    pub compute: Compute,
    pub database: String,
    pub secret_arn: Option<String>,
    pub db_user: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compute {
    /// Redshift Serverless.
    Workgroup(String),
    /// A provisioned cluster.
    Cluster(String),
}

pub const URL_HELP: &str =
    "redshift://ENDPOINT/DATABASE[?secret_arn=ARN] where ENDPOINT is what the console \
     shows (WORKGROUP.ACCOUNT.REGION.redshift-serverless.amazonaws.com or \
     CLUSTER.ID.REGION.redshift.amazonaws.com, port optional), or redshift:///DATABASE?workgroup=NAME \
     (or cluster=ID)&region=REGION; a provisioned cluster also needs db_user=NAME or secret_arn=ARN";

impl RedshiftTarget {
    pub fn parse(raw: &str) -> Result<RedshiftTarget, LoadError> {
        let bad = |why: &str| LoadError::BadWarehouseUrl {
            why: why.to_owned(),
            help: URL_HELP,
        };
        let url = url::Url::parse(raw).map_err(|e| bad(&format!("not a URL ({e})")))?;
        if url.scheme() != "redshift" {
            return Err(bad("the scheme is not redshift://"));
        }
        if url.password().is_some() {
            return Err(bad(
                "the Data API takes no password: keep it in Secrets Manager and pass secret_arn=, \
                 or use an IAM db_user=",
            ));
        }
        let mut query: HashMap<String, String> = HashMap::new();
        for (key, value) in url.query_pairs() {
            if !["workgroup", "cluster", "secret_arn", "db_user", "region"].contains(&key.as_ref()) {
                return Err(bad(&format!("unknown parameter '{key}'")));
            }
            query.insert(key.into_owned(), value.into_owned());
        }
        let database = url.path().trim_matches('/').to_owned();
        if database.is_empty() || database.contains('/') {
            return Err(bad("name the database as the path: redshift://…/DATABASE"));
        }
        let (endpoint_compute, endpoint_region) = parse_endpoint(url.host_str().unwrap_or_default());
        let compute = match (query.remove("workgroup"), query.remove("cluster")) {
            (Some(workgroup), None) => Compute::Workgroup(workgroup),
            (None, Some(cluster)) => Compute::Cluster(cluster),
            (Some(_), Some(_)) => return Err(bad("give workgroup= or cluster=, not both")),
            (None, None) => endpoint_compute.ok_or_else(|| {
                bad("no workgroup or cluster: the host is not a Redshift endpoint and neither workgroup= nor cluster= is given")
            })?,
        };
        let url_user = (!url.username().is_empty()).then(|| url.username().to_owned());
        let db_user = query.remove("db_user").or(url_user);
        let secret_arn = query.remove("secret_arn");
        match &compute {
            Compute::Cluster(_) if db_user.is_none() && secret_arn.is_none() => {
                return Err(bad(
                    "a provisioned cluster needs credentials: db_user=NAME (temporary IAM credentials) or secret_arn=ARN",
                ))
            }
            Compute::Workgroup(_) if db_user.is_some() => {
                return Err(bad(
                    "Redshift Serverless takes no db_user: your IAM identity is the database user, or pass secret_arn=",
                ))
            }
            _ => {}
        }
        Ok(RedshiftTarget {
            compute,
            database,
            secret_arn,
            db_user,
            region: query.remove("region").or(endpoint_region),
        })
    }
}

/// Workgroup or cluster, and region, from an endpoint host name as the console shows it.
fn parse_endpoint(host: &str) -> (Option<Compute>, Option<String>) {
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [workgroup, _account, region, "redshift-serverless", "amazonaws", "com"] => (
            Some(Compute::Workgroup((*workgroup).to_owned())),
            Some((*region).to_owned()),
        ),
        [cluster, _id, region, "redshift", "amazonaws", "com"] => (
            Some(Compute::Cluster((*cluster).to_owned())),
            Some((*region).to_owned()),
        ),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<RedshiftTarget, String> {
        RedshiftTarget::parse(url).map_err(|e| e.to_string())
    }

    #[test]
    fn console_endpoints_name_the_compute_and_region() {
        assert_eq!(
            target("redshift://analytics.123456789012.eu-west-1.redshift-serverless.amazonaws.com:5439/dev"),
            Ok(RedshiftTarget {
                compute: Compute::Workgroup("analytics".into()),
                database: "dev".into(),
                secret_arn: None,
                db_user: None,
                region: Some("eu-west-1".into()),
            })
        );
        assert_eq!(
            target("redshift://loader@prod.c0abc.us-east-1.redshift.amazonaws.com/warehouse"),
            Ok(RedshiftTarget {
                compute: Compute::Cluster("prod".into()),
                database: "warehouse".into(),
                secret_arn: None,
                db_user: Some("loader".into()),
                region: Some("us-east-1".into()),
            })
        );
    }

    #[test]
    fn query_parameters_name_the_compute_and_credentials() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:redshift-AbC";
        let parsed = target(&format!(
            "redshift:///dev?cluster=prod&secret_arn={arn}&region=ap-south-1"
        ))
        .expect("valid");
        assert_eq!(parsed.compute, Compute::Cluster("prod".into()));
        assert_eq!(parsed.secret_arn.as_deref(), Some(arn));
        assert_eq!(parsed.region.as_deref(), Some("ap-south-1"));
        let parsed = target("redshift://localhost:9999/dev?workgroup=wg").expect("valid");
        assert_eq!(parsed.compute, Compute::Workgroup("wg".into()));
        assert_eq!(parsed.region, None);
    }

    #[test]
    fn bad_urls_say_what_to_do() {
        for (url, says) in [
            (
                "redshift://u:pw@prod.c0abc.us-east-1.redshift.amazonaws.com/dev",
                "no password",
            ),
            (
                "redshift://prod.c0abc.us-east-1.redshift.amazonaws.com/dev",
                "db_user=NAME",
            ),
            (
                "redshift://analytics.1.eu-west-1.redshift-serverless.amazonaws.com/",
                "name the database",
            ),
            ("redshift://example.com/dev", "no workgroup or cluster"),
            ("redshift:///dev?workgroup=a&cluster=b", "not both"),
            (
                "redshift:///dev?workgroup=a&password=x",
                "unknown parameter 'password'",
            ),
            ("redshift:///dev?workgroup=a&db_user=x", "takes no db_user"),
        ] {
            let error = target(url).expect_err(url);
            assert!(error.contains(says), "{url}: {error}");
            assert!(error.contains("redshift://ENDPOINT/DATABASE"), "{error}");
        }
    }
}
