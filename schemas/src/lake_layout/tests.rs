use proptest::prelude::*;

use super::*;

fn any_hour() -> impl Strategy<Value = Hour> {
    // Years 0000–9999: what `dt=YYYY-MM-DD` can spell.
    (-62_167_219_200_000i64..253_402_300_799_999).prop_map(Hour::of_millis)
}

fn any_file_key() -> impl Strategy<Value = FileKey> {
    (any_hour(), 0..=i32::MAX, 0..=i64::MAX, 0..TABLES.len()).prop_map(
        |(hour, partition, first_offset, table)| FileKey {
            table: TABLES[table],
            hour,
            partition,
            first_offset,
        },
    )
}

proptest! {
    #[test]
    fn a_data_key_parses_back_to_its_file_key(key in any_file_key()) {
        prop_assert_eq!(FileKey::parse_data_key(&key.data_key()), Some(key));
        prop_assert!(check_key(&key.data_key()).is_ok());
        prop_assert!(check_key(&key.dead_letter_key()).is_ok());
        prop_assert_eq!(FileKey::parse_data_key(&key.dead_letter_key()), None);
    }

    #[test]
    fn metadata_reads_back_as_written(
        topic in "\\PC{0,40}",
        partition in 0..=i32::MAX,
        first_offset in 0..=i64::MAX,
        last_offset in -1..=i64::MAX,
        rows in any::<u64>(),
    ) {
        let written: Vec<(&str, String)> = FileRange::opening_metadata(&topic, partition, first_offset)
            .into_iter()
            .chain(FileRange::closing_metadata(last_offset, rows))
            .collect();
        let read = FileRange::from_metadata(|name| {
            written.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str())
        });
        prop_assert_eq!(read, Ok(FileRange { topic, partition, first_offset, last_offset, rows }));
    }

    #[test]
    fn dead_letters_read_back_as_written(
        letters in proptest::collection::vec(
            (0..=i32::MAX, 0..=i64::MAX, "\\PC*|[\n\r\u{2028}\0\"\\\\]{0,8}", "\\PC{0,20}"),
            0..6,
        ),
    ) {
        let letters: Vec<DeadLetter> = letters
            .into_iter()
            .map(|(kafka_partition, kafka_offset, payload, reason)| DeadLetter { kafka_partition, kafka_offset, payload, reason })
            .collect();
        let file = DeadLetter::file_of(&letters);
        let read: Vec<DeadLetter> = DeadLetter::lines_of(&file)
            .map(|(_, letter)| letter.expect("a line the writer wrote"))
            .collect();
        prop_assert_eq!(read, letters);
    }
}

#[test]
fn keys_are_those_of_design_section_4() {
    let key = FileKey {
        table: &EXPOSURES,
        hour: Hour::of_millis(1_764_054_000_000 + 1_234), // 2025-11-25T07:00:01.234Z
        partition: 3,
        first_offset: 120,
    };
    assert_eq!(
        key.data_key(),
        "exposures/v1/dt=2025-11-25/hour=07/p003-00000000000000000120.parquet"
    );
    assert_eq!(
        key.dead_letter_key(),
        "_rejected/v1/dt=2025-11-25/hour=07/p003-00000000000000000120.ndjson"
    );
    assert_eq!(key.hour.label(), "2025-11-25T07");
    let feature_usage = FileKey {
        table: &crate::tracked::FEATURE_USAGE,
        ..key
    };
    assert_eq!(
        feature_usage.data_key(),
        "feature_usage/v1/dt=2025-11-25/hour=07/p003-00000000000000000120.parquet"
    );
    assert_eq!(
        FileKey::parse_data_key(&feature_usage.data_key()),
        Some(feature_usage)
    );
    // The last millisecond of an hour is in it; the next one is not.
    assert_eq!(Hour::of_millis(1_764_054_000_000 + 3_599_999), key.hour);
    assert_eq!(
        Hour::of_millis(1_764_054_000_000 + 3_600_000).label(),
        "2025-11-25T08"
    );
}

#[test]
fn other_objects_are_not_data_files() {
    for other in [
        "exposures/v1/dt=2026-11-25/hour=07/p003-00000000000000000120.parquet.tmp",
        "exposures/v1/dt=2026-11-25/hour=24/p003-00000000000000000001.parquet",
        "exposures/v1/dt=2026-11-25/hour=7/p003-00000000000000000001.parquet",
        "exposures/v1/dt=x/hour=07/p003-00000000000000000001.parquet",
        "exposures/v1/dt=2026-11-25/hour=07/p3-1.parquet",
        "exposures/v1/dt=2026-11-25/hour=07/p+03-00000000000000000001.parquet",
        "exposures/v1/dt=2026-11-25/hour=07/extra/p003-00000000000000000001.parquet",
        "exposures/v2/dt=2026-11-25/hour=07/p003-00000000000000000001.parquet",
        "tenant/exposures/v1/dt=2026-11-25/hour=07/p003-00000000000000000001.parquet",
    ] {
        assert_eq!(FileKey::parse_data_key(other), None, "{other}");
    }
}

#[test]
fn keys_outside_the_lake_are_refused() {
    assert!(check_key("exposures/v1/dt=2026-11-25/hour=10/p000-00000000000000000000.parquet").is_ok());
    for bad in [
        "",
        "/etc/passwd",
        "a/../../etc/passwd",
        "a//b",
        "./a",
        "a\\b",
        "a\0b",
    ] {
        assert!(check_key(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn metadata_that_is_not_a_range_says_which_key() {
    let missing = FileRange::from_metadata(|_| None);
    assert_eq!(missing, Err(MetadataError::Missing(metadata::TOPIC)));
    let negative_rows =
        FileRange::from_metadata(|name| Some(if name == metadata::ROWS { "-1" } else { "7" }));
    assert_eq!(negative_rows, Err(MetadataError::NotANumber(metadata::ROWS)));
}

#[test]
fn an_unreadable_dead_letter_line_is_returned_with_its_error() {
    let lines: Vec<_> = DeadLetter::lines_of(b"{\"not\":1}\n\n").collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].1.is_err());
}
