//! The circuit breaker over single-file refusals (module doc of [`super`], "Failures").

/// The circuit breaker over single-file refusals: the signature of the last one and how
/// many files in a row were refused with it.
#[derive(Debug, Default)]
pub(super) struct Breaker {
    signature: String,
    in_a_row: u32,
}

impl Breaker {
    /// Counts a refusal; `Err` once more than [`CIRCUIT_BREAKER_FILES`] files in a row
    /// were refused with the same error.
    pub(super) fn observe(&mut self, message: &str) -> Result<(), String> {
        let signature = signature(message);
        if self.signature == signature {
            self.in_a_row += 1;
        } else {
            *self = Breaker {
                signature,
                in_a_row: 1,
            };
        }
        if self.in_a_row > CIRCUIT_BREAKER_FILES {
            return Err(format!(
                "{} files in a row refused with the same error, so it is not in the files: not \
                 quarantining more until it is fixed: {message}",
                self.in_a_row - 1
            ));
        }
        Ok(())
    }
}

/// Files in a row refused with the same error before the loader stops quarantining and
/// fails loudly instead: an error every file hits (a codec or type Redshift cannot read,
/// a setting) is not in the files.
const CIRCUIT_BREAKER_FILES: u32 = 3;

/// An error message without what names a particular file, row or query.
fn signature(message: &str) -> String {
    message
        .split_whitespace()
        .filter(|word| {
            !word.contains("s3://") && !word.contains('/') && !word.chars().any(|c| c.is_ascii_digit())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
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
}
