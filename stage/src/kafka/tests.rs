use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
}

fn sasl() -> KafkaArgs {
    Cli::parse_from([
        "test",
        "--brokers",
        "b-1.msk:9096",
        "--kafka-property",
        "security.protocol=SASL_SSL",
        "--kafka-property",
        "sasl.mechanism=SCRAM-SHA-512",
        "--kafka-property",
        "sasl.username=loader",
        "--kafka-property",
        "sasl.password=s3cr=t",
    ])
    .kafka
}

const ROLES: [ClientRole<'static>; 3] = [
    ClientRole::Producer {
        client_id: "p",
        message_timeout: Duration::from_secs(2),
    },
    ClientRole::Consumer {
        group: "g",
        client_id: "c",
    },
    ClientRole::Admin {
        group: "g",
        client_id: "a",
    },
];

#[test]
fn a_repeated_error_is_worth_one_line() {
    let mut errors = RepeatedErrors::default();
    assert!(errors.worth_logging(&"AllBrokersDown"));
    assert!(!errors.worth_logging(&"AllBrokersDown"));
    assert!(errors.worth_logging(&"BrokerTransportFailure"));
    errors.clear();
    assert!(errors.worth_logging(&"BrokerTransportFailure"));
}

#[test]
fn every_role_carries_the_security_properties() {
    let kafka = sasl();
    for role in ROLES {
        let config = kafka.config(role, &[]).expect("valid");
        assert_eq!(config.get("bootstrap.servers"), Some("b-1.msk:9096"), "{role:?}");
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"), "{role:?}");
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"), "{role:?}");
        assert_eq!(config.get("sasl.username"), Some("loader"), "{role:?}");
        assert_eq!(config.get("sasl.password"), Some("s3cr=t"), "{role:?}");
    }
}

/// The build links OpenSSL into librdkafka: without it, creating a client with
/// `SASL_SSL` or SCRAM fails ("OpenSSL not available at build time").
#[test]
fn clients_with_tls_and_scram_can_be_created() {
    use rdkafka::producer::BaseProducer;
    let config = sasl().config(ROLES[0], &[]).expect("valid");
    let created: Result<BaseProducer, _> = config.create();
    assert!(created.is_ok(), "{:?}", created.err());
}

#[test]
fn the_role_decides_durability_and_commits() {
    let kafka = KafkaArgs::plaintext("k:9092");
    let producer = kafka.config(ROLES[0], &[]).expect("valid");
    assert_eq!(producer.get("acks"), Some("all"));
    assert_eq!(producer.get("enable.idempotence"), Some("true"));
    assert_eq!(producer.get("message.timeout.ms"), Some("2000"));
    let consumer = kafka
        .config(ROLES[1], &[("session.timeout.ms", "6000".into())])
        .expect("valid");
    assert_eq!(consumer.get("group.id"), Some("g"));
    assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
    assert_eq!(consumer.get("session.timeout.ms"), Some("6000"));
}

#[test]
fn users_override_tuning_but_not_guarantees() {
    let mut kafka = KafkaArgs::plaintext("k:9092");
    kafka.properties = vec![("session.timeout.ms".into(), "10000".into())];
    let consumer = kafka
        .config(ROLES[1], &[("session.timeout.ms", "6000".into())])
        .expect("valid");
    assert_eq!(consumer.get("session.timeout.ms"), Some("10000"));
    for (role, key) in [
        (ROLES[0], "acks"),
        (ROLES[0], "enable.idempotence"),
        (ROLES[0], "message.timeout.ms"),
        (ROLES[1], "enable.auto.commit"),
        (ROLES[1], "auto.offset.reset"),
        (ROLES[1], "group.id"),
        (ROLES[2], "bootstrap.servers"),
    ] {
        kafka.properties = vec![(key.into(), "x".into())];
        let error = kafka.config(role, &[]).expect_err(key).to_string();
        assert!(error.contains(key) && error.contains("cannot be set"), "{error}");
    }
}

#[test]
fn consumer_properties_reach_consumers_only_over_the_stage_tuning() {
    let mut kafka = KafkaArgs::plaintext("k:9092");
    kafka.consumer_properties = vec![("fetch.min.bytes".into(), "1".into())];
    let consumer = kafka
        .config(ROLES[1], &[("fetch.min.bytes", "1048576".into())])
        .expect("valid");
    assert_eq!(consumer.get("fetch.min.bytes"), Some("1"));
    for role in [ROLES[0], ROLES[2]] {
        let config = kafka.config(role, &[]).expect("valid");
        assert_eq!(config.get("fetch.min.bytes"), None, "{role:?}");
    }
    kafka.properties = vec![("fetch.min.bytes".into(), "65536".into())];
    let consumer = kafka.config(ROLES[1], &[]).expect("valid");
    assert_eq!(
        consumer.get("fetch.min.bytes"),
        Some("65536"),
        "the user's word is last"
    );
}

#[test]
fn properties_parse_from_the_environment_form() {
    assert_eq!(
        parse_key_value(" sasl.password = a=b "),
        Ok(("sasl.password".into(), "a=b".into()))
    );
    assert!(parse_key_value("novalue").is_err());
    assert!(parse_key_value("=x").is_err());
}

fn msk_iam(more: &[&str]) -> KafkaArgs {
    let mut args = vec![
        "test",
        "--brokers",
        "b-1.msk:9098",
        "--kafka-auth",
        "msk-iam",
        "--kafka-region",
        "eu-west-1",
    ];
    args.extend(more);
    Cli::parse_from(args).kafka
}

/// Every client role made with `--kafka-auth msk-iam` speaks SASL_SSL + OAUTHBEARER and
/// carries the token refresh (the context's signer, for its region).
#[test]
fn every_role_with_msk_iam_carries_sasl_ssl_oauthbearer_and_the_token_refresh() {
    let kafka = msk_iam(&[]);
    for role in ROLES {
        let config = kafka.config(role, &[]).expect("valid");
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"), "{role:?}");
        assert_eq!(config.get("sasl.mechanism"), Some("OAUTHBEARER"), "{role:?}");
    }
    const { assert!(<StageContext as rdkafka::ClientContext>::ENABLE_REFRESH_OAUTH_TOKEN) };
    let context = kafka.context().expect("a context");
    let signer = context.oauth.as_ref().expect("a signer");
    assert_eq!(signer.region(), "eu-west-1");
    let again = kafka.oauth().expect("signer").expect("some");
    assert!(Arc::ptr_eq(signer, &again), "one signer per process and region");
    assert!(KafkaArgs::plaintext("k:9092")
        .context()
        .expect("context")
        .oauth
        .is_none());
}

/// What --kafka-auth msk-iam sets may be repeated in --kafka-property, not contradicted.
#[test]
fn a_property_contradicting_msk_iam_is_refused_with_the_reason() {
    let repeated = msk_iam(&["--kafka-property", "security.protocol=sasl_ssl"]);
    assert!(repeated.config(ROLES[0], &[]).is_ok());
    for property in [
        "sasl.mechanism=SCRAM-SHA-512",
        "sasl.mechanisms=PLAIN",
        "security.protocol=SSL",
    ] {
        let kafka = msk_iam(&["--kafka-property", property]);
        let error = kafka.config(ROLES[1], &[]).expect_err(property);
        assert!(
            error.to_string().contains("contradicts --kafka-auth msk-iam"),
            "{error}"
        );
        assert!(error.retry().is_permanent());
    }
}
