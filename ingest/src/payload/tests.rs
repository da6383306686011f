use super::*;
use serde_json::Value;

#[test]
fn array_ndjson_and_single_object_batches() {
    assert_eq!(
        parse_batch::<Value>(b" [{\"a\":1},{\"a\":2}]", 10).unwrap().len(),
        2
    );
    assert_eq!(
        parse_batch::<Value>(b"{\"a\":1}\n\n{\"a\":2}\r\n", 10)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(parse_batch::<Value>(b"{\"a\":1}", 10).unwrap().len(), 1);
}

#[test]
fn batch_errors() {
    assert!(matches!(
        parse_batch::<Value>(b"[]", 10),
        Err(ApiError::EmptyBatch)
    ));
    assert!(matches!(
        parse_batch::<Value>(b"  \n", 10),
        Err(ApiError::EmptyBatch)
    ));
    assert!(matches!(
        parse_batch::<Value>(b"[1,2,3]", 2),
        Err(ApiError::TooManyEvents { count: 3, limit: 2 })
    ));
    assert!(matches!(
        parse_batch::<Value>(b"{}\n{}\n{}", 2),
        Err(ApiError::TooManyEvents { .. })
    ));
    match parse_batch::<Value>(b"{}\n{oops}\n", 10) {
        Err(ApiError::MalformedJson(message)) => {
            assert!(message.contains("line 2 (event index 1)"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn content_types() {
    let mut headers = HeaderMap::new();
    assert!(check_content_type(&headers).is_ok());
    for ok in [
        "application/json",
        "text/plain;charset=UTF-8",
        "application/x-ndjson",
        "application/vnd.api+json",
    ] {
        headers.insert(header::CONTENT_TYPE, ok.parse().unwrap());
        assert!(check_content_type(&headers).is_ok(), "{ok}");
    }
    for bad in [
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ] {
        headers.insert(header::CONTENT_TYPE, bad.parse().unwrap());
        assert!(
            matches!(
                check_content_type(&headers),
                Err(ApiError::UnsupportedMediaType(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn counting_stops_at_the_limit_without_building_the_rest() {
    let zeros = format!("[{}0]", "0,".repeat(1_000_000));
    assert!(matches!(
        parse_batch::<Value>(zeros.as_bytes(), 10),
        Err(ApiError::TooManyEvents { count: 11, limit: 10 })
    ));
    assert_eq!(parse_batch::<Value>(b"[1,2]", 2).map(|e| e.len()).ok(), Some(2));
    assert!(matches!(
        parse_batch::<Value>(b"[1,2] x", 2),
        Err(ApiError::MalformedJson(_))
    ));
}

#[test]
fn parse_cost_counts_values_not_bytes() {
    assert_eq!(parse_cost(b"7"), BYTES_PER_VALUE);
    assert_eq!(parse_cost(b"[0,0,0]"), 4 * BYTES_PER_VALUE);
    assert_eq!(
        parse_cost(br#"{"a,b:[{":"x"}"#),
        3 * BYTES_PER_VALUE,
        "delimiters in strings do not count"
    );
    assert_eq!(
        parse_cost(br#"["\"",1]"#),
        3 * BYTES_PER_VALUE,
        "escaped quotes stay in the string"
    );
    let zeros = format!("[{}0]", "0,".repeat(1000));
    assert!(parse_cost(zeros.as_bytes()) > 30 * zeros.len());
}

#[test]
fn the_budget_refuses_what_it_cannot_hold_and_gets_it_back() {
    let budget = Budget::new(100);
    let mut first = Reservation::default();
    budget.reserve(&mut first, 60).expect("fits");
    budget.reserve(&mut first, 30).expect("fits");
    let mut second = Reservation::default();
    assert!(matches!(
        budget.reserve(&mut second, 20),
        Err(ApiError::Overloaded)
    ));
    drop(first);
    budget.reserve(&mut second, 100).expect("returned on drop");
}

#[test]
fn an_array_splits_into_its_elements_by_structure_alone() {
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let body = format!(r#" [ {{"a": "],\"["}} , {deep},{{"b":[1,{{}}]}} ] "#);
    assert_eq!(
        split_array(body.as_bytes()),
        Some(vec![r#"{"a": "],\"["}"#, deep.as_str(), r#"{"b":[1,{}]}"#])
    );
    assert_eq!(split_array(b"[]"), Some(vec![]));
    assert_eq!(split_array(b"[{\"broken\": }]"), Some(vec!["{\"broken\": }"]));
    for not_an_array in [
        &b"["[..],
        b"[1,]",
        b"[,1]",
        b"[{]",
        b"[\"]",
        b"{}",
        b"[1]]",
        b"[1] x",
    ] {
        assert_eq!(
            split_array(not_an_array),
            None,
            "{}",
            String::from_utf8_lossy(not_an_array)
        );
    }
}
