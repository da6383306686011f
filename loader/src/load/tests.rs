use super::*;

#[test]
fn errors_say_whether_a_retry_can_help() {
    let data_api = |retry| LoadError::DataApi {
        doing: "loading a batch".into(),
        message: "…".into(),
        retry,
    };
    for permanent in [
        LoadError::NoWarehouse,
        LoadError::UnsupportedWarehouse("mysql://x".into()),
        LoadError::Unsupported("not built"),
        LoadError::Decode {
            query: "q",
            row: 0,
            column: "c",
            why: "not a number".into(),
        },
        LoadError::Lake(LakeError::Missing("k".into())),
        data_api(Retry::Permanent),
    ] {
        assert_eq!(permanent.retry(), Retry::Permanent, "{permanent}");
    }
    for transient in [
        LoadError::CircuitOpen("3 files in a row".into()),
        data_api(Retry::Transient),
    ] {
        assert_eq!(transient.retry(), Retry::Transient, "{transient}");
    }
}

#[test]
fn a_batch_waits_the_interval_from_when_its_first_file_was_written() {
    let interval = Duration::from_secs(10);
    let now = tokio::time::Instant::now();
    // Just written: about the whole interval.
    let fresh = batch_deadline(Utc::now(), interval);
    assert!(fresh >= now + Duration::from_secs(9) && fresh <= now + interval + Duration::from_secs(1));
    // Written 4 s ago: about 6 s left.
    let older = batch_deadline(Utc::now() - chrono::Duration::seconds(4), interval);
    assert!(older >= now + Duration::from_secs(5) && older <= now + Duration::from_secs(7));
    // Written long ago (the loader is behind): no wait.
    let behind = batch_deadline(Utc::now() - chrono::Duration::minutes(5), interval);
    assert!(behind <= tokio::time::Instant::now());
    // Dated in the future by a skewed clock: never more than the interval.
    let skewed = batch_deadline(Utc::now() + chrono::Duration::minutes(5), interval);
    assert!(skewed <= tokio::time::Instant::now() + interval);
}
