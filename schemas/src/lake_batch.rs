//! The lake's rows as Arrow columns: [`ExposureBatchBuilder`] appends [`LakeRow`]s and
//! yields `RecordBatch`es of [`arrow_schema`], which the sink encodes to Parquet.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;

use crate::columns::arrow_schema;
use crate::lake_row::LakeRow;

/// Accumulates exposures into Arrow columns; [`ExposureBatchBuilder::finish`] yields a
/// `RecordBatch` of [`arrow_schema`].
pub struct ExposureBatchBuilder {
    event_id: StringBuilder,
    ds_user_id: StringBuilder,
    anonymous_id: StringBuilder,
    experiment_id: StringBuilder,
    variation_id: StringBuilder,
    exposed_at: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    source: StringBuilder,
    attributes: StringBuilder,
    promoted_text: [StringBuilder; 7],
    is_kf_verified: BooleanBuilder,
    extra: StringBuilder,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
    rows: usize,
    approx_bytes: usize,
}

impl Default for ExposureBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ExposureBatchBuilder {
    pub fn new() -> Self {
        ExposureBatchBuilder {
            event_id: StringBuilder::new(),
            ds_user_id: StringBuilder::new(),
            anonymous_id: StringBuilder::new(),
            experiment_id: StringBuilder::new(),
            variation_id: StringBuilder::new(),
            exposed_at: TimestampMicrosecondBuilder::new(),
            received_at: TimestampMicrosecondBuilder::new(),
            source: StringBuilder::new(),
            attributes: StringBuilder::new(),
            promoted_text: std::array::from_fn(|_| StringBuilder::new()),
            is_kf_verified: BooleanBuilder::new(),
            extra: StringBuilder::new(),
            kafka_partition: Int32Builder::new(),
            kafka_offset: Int64Builder::new(),
            rows: 0,
            approx_bytes: 0,
        }
    }

    /// Appends one row read from Kafka `partition` at `offset`.
    pub fn append(&mut self, row: &LakeRow<'_>, partition: i32, offset: i64) {
        let text_len = |text: &Option<std::borrow::Cow<'_, str>>| text.as_deref().map_or(0, str::len);
        self.approx_bytes += 64
            + row.event_id.len()
            + text_len(&row.ds_user_id)
            + text_len(&row.anonymous_id)
            + row.experiment_id.len()
            + row.variation_id.len()
            + text_len(&row.source)
            + text_len(&row.attributes) * 2
            + text_len(&row.extra);
        self.event_id.append_value(&row.event_id);
        self.ds_user_id.append_option(row.ds_user_id.as_deref());
        self.anonymous_id.append_option(row.anonymous_id.as_deref());
        self.experiment_id.append_value(&row.experiment_id);
        self.variation_id.append_value(&row.variation_id);
        self.exposed_at.append_value(row.exposed_at.timestamp_micros());
        self.received_at.append_value(row.received_at.timestamp_micros());
        self.source.append_option(row.source.as_deref());
        self.attributes.append_option(row.attributes.as_deref());
        for (builder, value) in self.promoted_text.iter_mut().zip(&row.promoted_text) {
            builder.append_option(value.as_deref());
        }
        self.is_kf_verified.append_option(row.is_kf_verified);
        self.extra.append_option(row.extra.as_deref());
        self.kafka_partition.append_value(partition);
        self.kafka_offset.append_value(offset);
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rough in-memory size of what was appended, for flush-by-size decisions.
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes
    }

    /// The rows appended so far as one batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let [ds_session_id, geo_country_code, geo_city, currency_id, locale, platform, user_agent] =
            &mut self.promoted_text;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.ds_user_id.finish()),
            Arc::new(self.anonymous_id.finish()),
            Arc::new(self.experiment_id.finish()),
            Arc::new(self.variation_id.finish()),
            Arc::new(self.exposed_at.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(ds_session_id.finish()),
            Arc::new(geo_country_code.finish()),
            Arc::new(geo_city.finish()),
            Arc::new(currency_id.finish()),
            Arc::new(locale.finish()),
            Arc::new(platform.finish()),
            Arc::new(self.is_kf_verified.finish()),
            Arc::new(user_agent.finish()),
            Arc::new(self.extra.finish()),
            Arc::new(self.kafka_partition.finish()),
            Arc::new(self.kafka_offset.finish()),
        ];
        self.rows = 0;
        self.approx_bytes = 0;
        RecordBatch::try_new(arrow_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::*;
    use crate::Normalizer;
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    use arrow_array::Array;
    use serde_json::{json, Map, Value};

    /// The text columns of `row` as the lake stores them, by name.
    fn lake_text(row: &LakeRow<'_>) -> impl Fn(&str) -> String {
        let mut builder = ExposureBatchBuilder::new();
        builder.append(row, 0, 0);
        let batch = builder.finish().unwrap();
        move |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .value(0)
                .to_owned()
        }
    }

    #[test]
    fn schema_lists_every_column_once_and_promotes_the_seed_attributes() {
        let schema = arrow_schema();
        assert_eq!(schema.fields().len(), COLUMNS.len());
        let names: std::collections::HashSet<_> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), COLUMNS.len());
        for attribute in PROMOTED_TEXT_ATTRIBUTES
            .iter()
            .chain([&PROMOTED_BOOLEAN_ATTRIBUTE])
        {
            assert!(names.contains(attribute), "{attribute}");
        }
    }

    #[test]
    fn promoted_text_is_cut_to_its_column_length_on_a_char_boundary() {
        let long = "é".repeat(40); // 80 bytes; geo_country_code holds 64
        let mut attributes = Map::new();
        attributes.insert("geo_country_code".into(), Value::String(long));
        let exposure = Normalizer::default()
            .normalize(
                json!({"ds_user_id": "u", "experiment_id": "e", "variation_id": "1", "attributes": attributes}),
                chrono::Utc::now(),
            )
            .unwrap();
        let mut builder = ExposureBatchBuilder::new();
        builder.append(&LakeRow::from_exposure(&exposure), 0, 0);
        let batch = builder.finish().unwrap();
        let country = batch
            .column_by_name("geo_country_code")
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_owned();
        assert_eq!(country, "é".repeat(32));
        assert_eq!(column_max_bytes("geo_country_code"), 64);
        assert_eq!(column_max_bytes("attributes"), usize::MAX);
    }

    #[test]
    fn promoted_text_is_cut_by_bytes_never_inside_a_character() {
        // Widths in bytes: geo_country_code 64, ds_session_id 256, user_agent 1024.
        let attributes = json!({
            "geo_country_code": format!("a{}", "😀".repeat(16)), // 65 bytes → "a" + 15 × 4
            "ds_session_id": "€".repeat(100),                    // 300 bytes → 85 × 3
            "user_agent": "x".repeat(1024),                      // exactly the width: kept
            "locale": format!("{}é", "x".repeat(63)),            // 65 bytes, é straddles 64
        });
        let exposure = Normalizer::default()
            .normalize(
                json!({"ds_user_id": "u", "experiment_id": "e", "variation_id": "1", "attributes": attributes}),
                chrono::Utc::now(),
            )
            .unwrap();
        let text = lake_text(&LakeRow::from_exposure(&exposure));
        assert_eq!(text("geo_country_code"), format!("a{}", "😀".repeat(15)));
        assert_eq!(text("ds_session_id"), "€".repeat(85));
        assert_eq!(text("user_agent").len(), 1024);
        assert_eq!(text("locale"), "x".repeat(63));
        for name in PROMOTED_TEXT_ATTRIBUTES {
            assert!(text(name).len() <= column_max_bytes(name), "{name}");
        }
        // The attributes column itself is never cut.
        let stored: Value = serde_json::from_str(&text("attributes")).unwrap();
        assert_eq!(stored["ds_session_id"], json!("€".repeat(100)));
    }

    #[test]
    fn the_lake_keeps_the_clients_numbers_and_key_order() {
        let body: Value = serde_json::from_str(
            r#"{"ds_user_id": "u", "experiment_id": "e", "variation_id": "1",
                "attributes": {"z": 123456789012345678901234567890, "platform": 7.50, "a": [1e-7, -0]},
                "cart": {"total": 18446744073709551616}}"#,
        )
        .unwrap();
        let exposure = Normalizer::default().normalize(body, chrono::Utc::now()).unwrap();
        // Through Kafka as the sink decodes it.
        let value = exposure.to_json_bytes();
        let text = lake_text(&LakeRow::from_kafka_value(&value).unwrap());
        assert_eq!(
            text("attributes"),
            r#"{"z":123456789012345678901234567890,"platform":7.50,"a":[1e-7,-0]}"#
        );
        assert_eq!(text("extra"), r#"{"cart":{"total":18446744073709551616}}"#);
        assert_eq!(
            text("platform"),
            "7.50",
            "a promoted number is its JSON text as sent"
        );
    }

    #[test]
    fn builder_rows_match_the_records() {
        let now = chrono::Utc::now();
        let seed = json!({
            "ds_user_id": "user_12345", "experiment_id": "new_search_ui", "variation_id": 1,
            "attributes": {"ds_session_id": "s1", "geo_country_code": "US", "is_kf_verified": "true",
                "platform": "web", "locale": 7, "utm": {"source": "google"}},
            "source": "search_core_python", "page": "/search"
        });
        let a = Normalizer::default().normalize(seed, now).unwrap();
        let b = Normalizer::default()
            .normalize(
                json!({"anonymous_id": "anon", "experiment_id": "e", "variation_id": "0"}),
                now,
            )
            .unwrap();
        let mut builder = ExposureBatchBuilder::new();
        builder.append(&LakeRow::from_exposure(&a), 3, 100);
        builder.append(&LakeRow::from_exposure(&b), 3, 101);
        assert_eq!(builder.rows(), 2);
        assert!(builder.approx_bytes() > 0);
        let batch = builder.finish().unwrap();
        assert_eq!(builder.rows(), 0);
        assert_eq!(batch.num_rows(), 2);
        let text = |name: &str| batch.column_by_name(name).unwrap().as_string::<i32>().clone();
        assert_eq!(text("event_id").value(0), a.event_id);
        assert_eq!(text("ds_user_id").value(0), "user_12345");
        assert!(text("ds_user_id").is_null(1));
        assert_eq!(text("anonymous_id").value(1), "anon");
        assert_eq!(text("variation_id").value(0), "1");
        assert_eq!(text("ds_session_id").value(0), "s1");
        assert_eq!(text("locale").value(0), "7");
        assert!(text("geo_city").is_null(0));
        let attributes: Value = serde_json::from_str(text("attributes").value(0)).unwrap();
        assert_eq!(attributes["utm"]["source"], "google");
        assert_eq!(text("extra").value(0), r#"{"page":"/search"}"#);
        assert!(text("extra").is_null(1));
        let verified = batch
            .column_by_name("is_kf_verified")
            .unwrap()
            .as_boolean()
            .clone();
        assert!(verified.value(0));
        assert!(verified.is_null(1));
        let exposed = batch
            .column_by_name("exposed_at")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        assert_eq!(exposed.value(0), a.exposed_at.timestamp_micros());
        let offsets = batch
            .column_by_name("kafka_offset")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>()
            .clone();
        assert_eq!((offsets.value(0), offsets.value(1)), (100, 101));
    }
}
