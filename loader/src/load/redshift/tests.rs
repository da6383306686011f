use super::*;

#[test]
fn the_breaker_trips_on_the_same_error_in_a_row_whatever_the_file() {
    let mut breaker = Breaker::default();
    let refused = |file: &str| {
        format!("Spectrum Scan Error: File 's3://lake/{file}' uses an unsupported codec. query 12{file}")
    };
    for file in ["a.parquet", "b.parquet", "c.parquet"] {
        assert!(breaker.observe(&refused(file)).is_ok(), "{file}");
    }
    let error = breaker
        .observe(&refused("d.parquet"))
        .expect_err("the fourth trips");
    assert!(error.contains("3 files in a row"), "{error}");
    let mut breaker = Breaker::default();
    for message in [
        "invalid version number",
        "unsupported codec",
        "invalid version number",
    ] {
        assert!(breaker.observe(message).is_ok(), "different errors never trip");
    }
}
