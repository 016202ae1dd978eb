//! Go-style durations from flags: a value or an error, never a panic (huge, negative-looking,
//! unicode, many units). Cases: `PROPTEST_CASES`, 2,000 by default; `PARSERS_LONG=1`: 1,000,000.

use cloud_controller_manager::duration::parse_duration;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = if std::env::var_os("PARSERS_LONG").is_some() {
        1_000_000
    } else {
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000)
    };
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn durations(text in prop_oneof![
        "\\PC{0,30}",
        "([0-9]{0,25}(\\.[0-9]{0,5})?(ns|us|µs|ms|s|m|h|d|)){1,5}",
        Just("99999999999999999999999999h".to_string()),
        Just(".h".to_string()),
    ]) {
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(d.as_secs_f64().is_finite());
        }
    }
}

#[test]
fn a_duration_too_long_is_an_error_not_a_panic() {
    assert!(parse_duration("99999999999999999999999999h").is_err());
}
