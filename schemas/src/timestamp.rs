//! Timestamps in the one spelling ingest writes (`YYYY-MM-DDTHH:MM:SS[.f]Z`, chrono's
//! serde form of a UTC time), read and written without chrono's general formatter and
//! parser, which were a tenth of the sink's decode and of ingest's encode.

use std::io::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike, Utc};

/// `text` as chrono's `DateTime<Utc>` parses it (what serde reads a timestamp with),
/// with a fast path for the one spelling ingest writes, `YYYY-MM-DDTHH:MM:SS[.f…]Z`:
/// chrono's general parser was a tenth of the sink's decode.
pub(crate) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match utc_timestamp(text.as_bytes()) {
        Some(timestamp) => Ok(timestamp),
        None => text.parse(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` or with 1 to 9 fractional digits; `None` for anything else
/// (offsets, leap seconds, impossible dates), which chrono then decides.
fn utc_timestamp(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |value, digit| {
            digit
                .is_ascii_digit()
                .then(|| value * 10 + u32::from(digit - b'0'))
        })
    };
    let (head, fraction) = (bytes.get(..19)?, bytes.get(19..bytes.len().checked_sub(1)?)?);
    if bytes.last() != Some(&b'Z')
        || [head[4], head[7], head[10], head[13], head[16]] != [b'-', b'-', b'T', b':', b':']
    {
        return None;
    }
    let nanos = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            number(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let year = i32::try_from(number(&head[0..4])?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(&head[5..7])?, number(&head[8..10])?)?;
    let (hour, minute, second) = (
        number(&head[11..13])?,
        number(&head[14..16])?,
        number(&head[17..19])?,
    );
    if second > 59 {
        return None;
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// Appends `timestamp` as a JSON string, exactly as serde_json writes a `DateTime<Utc>`
/// (RFC 3339 with `Z`; no fraction, or 3, 6 or 9 digits, whichever is shortest exact).
pub(crate) fn write_timestamp(out: &mut Vec<u8>, timestamp: &DateTime<Utc>) {
    // One conversion to the naive time: each accessor of a `DateTime` converts again.
    let naive = timestamp.naive_utc();
    let (year, nanos) = (naive.year(), naive.nanosecond());
    // Years beyond four digits take a sign, and a leap second's nanoseconds run past
    // a billion: chrono's own writer spells both.
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        let _ = serde_json::to_writer(&mut *out, timestamp);
        return;
    }
    let two = |out: &mut Vec<u8>, value: u32| {
        out.extend_from_slice(&[b'0' + (value / 10) as u8, b'0' + (value % 10) as u8])
    };
    out.push(b'"');
    two(out, year as u32 / 100);
    two(out, year as u32 % 100);
    out.push(b'-');
    two(out, naive.month());
    out.push(b'-');
    two(out, naive.day());
    out.push(b'T');
    two(out, naive.hour());
    out.push(b':');
    two(out, naive.minute());
    out.push(b':');
    two(out, naive.second());
    let _ = if nanos == 0 {
        Ok(())
    } else if nanos % 1_000_000 == 0 {
        write!(out, ".{:03}", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        write!(out, ".{:06}", nanos / 1_000)
    } else {
        write!(out, ".{nanos:09}")
    };
    out.extend_from_slice(b"Z\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps_read_as_chrono_reads_them() {
        for text in [
            "2026-11-25T12:00:00Z",
            "2026-11-25T12:00:00.1Z",
            "2026-11-25T12:00:00.123456Z",
            "2026-11-25T12:00:00.123456789Z",
            "2024-02-29T23:59:59.999999Z",
            "0001-01-01T00:00:00Z",
        ] {
            assert!(utc_timestamp(text.as_bytes()).is_some(), "{text}: the fast path");
            assert_eq!(
                parse_timestamp(text).ok(),
                text.parse::<DateTime<Utc>>().ok(),
                "{text}"
            );
        }
        // Other spellings are chrono's to decide, and decided the same.
        for text in [
            "2026-11-25T12:00:00+01:00",
            "2026-11-25t12:00:00z",
            "2026-11-25 12:00:00Z",
            "2026-11-25T12:00:60Z",
            "2026-11-25T12:00:59.9999999999Z",
            "2026-02-30T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T12:00:00.Z",
            "2026-11-25T12:00:00",
            "+2026-11-25T12:00:00Z",
            "2026-11-25T12:00:0xZ",
            "",
            "Z",
        ] {
            assert_eq!(
                parse_timestamp(text).ok(),
                text.parse::<DateTime<Utc>>().ok(),
                "{text}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_timestamp_ingest_writes_reads_back_exactly(
            micros in 0i64..253_402_300_799_000_000,
            format in prop_oneof![
                Just(chrono::SecondsFormat::AutoSi),
                Just(chrono::SecondsFormat::Secs),
                Just(chrono::SecondsFormat::Millis),
                Just(chrono::SecondsFormat::Micros),
                Just(chrono::SecondsFormat::Nanos),
            ],
        ) {
            let timestamp = DateTime::from_timestamp_micros(micros).expect("in range");
            let text = timestamp.to_rfc3339_opts(format, true);
            prop_assert!(utc_timestamp(text.as_bytes()).is_some(), "{}", text);
            prop_assert_eq!(parse_timestamp(&text).ok(), text.parse::<DateTime<Utc>>().ok());
            // As serde writes it, which is what the Kafka value holds.
            let json = serde_json::to_string(&timestamp).expect("json");
            let written = json.trim_matches('"');
            prop_assert_eq!(parse_timestamp(written).ok(), Some(timestamp));
        }
    }

    proptest! {
        #[test]
        fn timestamps_are_written_as_serde_json_writes_them(
            micros in -400_000_000_000_000_000i64..400_000_000_000_000_000,
            nanos in prop_oneof![Just(0u32), 0u32..1_000, 0u32..1_000_000_000],
        ) {
            let Some(timestamp) = DateTime::from_timestamp_micros(micros)
                .and_then(|t| t.with_nanosecond(nanos)) else {
                return Ok(());
            };
            let mut written = Vec::new();
            write_timestamp(&mut written, &timestamp);
            prop_assert_eq!(
                String::from_utf8(written).expect("utf-8"),
                serde_json::to_string(&timestamp).expect("json")
            );
        }
    }

    #[test]
    fn a_leap_second_and_distant_years_are_written_as_serde_json_writes_them() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("a leap second")
            .and_utc();
        let far = NaiveDate::from_ymd_opt(12345, 1, 2)
            .and_then(|d| d.and_hms_opt(3, 4, 5))
            .expect("a date")
            .and_utc();
        let before = NaiveDate::from_ymd_opt(-44, 3, 15)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("a date")
            .and_utc();
        for timestamp in [leap, far, before] {
            let mut written = Vec::new();
            write_timestamp(&mut written, &timestamp);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&timestamp).unwrap()
            );
        }
    }
}
