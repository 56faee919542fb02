use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time as Unix microseconds, the unit of every journal time.
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)).unwrap_or(0)
}
