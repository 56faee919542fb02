//! Strict RFC 3339 timestamps to unix microseconds.
//!
//! Seed facts only need "parse a timestamp the operator wrote"; a dozen lines
//! of date arithmetic are cheaper to audit than a date-time dependency.

/// Why a timestamp was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimestampError {
    #[error("`{0}` is not an RFC 3339 timestamp")]
    Format(String),
    #[error("month {0} is out of range (01-12)")]
    Month(u32),
    #[error("day {day} does not exist in {year:04}-{month:02}")]
    Day { year: i64, month: u32, day: u32 },
    #[error("time {0:02}:{1:02}:{2:02} is out of range (unix time has no leap seconds)")]
    Time(u32, u32, u32),
    #[error("UTC offset {0:02}:{1:02} is out of range")]
    Offset(u32, u32),
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` into microseconds
/// since 1970-01-01T00:00:00Z. Fractions finer than a microsecond are
/// truncated.
pub(crate) fn parse_rfc3339(text: &str) -> Result<i64, TimestampError> {
    let format = || TimestampError::Format(text.to_owned());
    let b = text.as_bytes();
    let byte = |i: usize| b.get(i).copied();
    let separators_ok = byte(4) == Some(b'-')
        && byte(7) == Some(b'-')
        && matches!(byte(10), Some(b'T' | b't'))
        && byte(13) == Some(b':')
        && byte(16) == Some(b':');
    if !separators_ok {
        return Err(format());
    }
    let num = |at: usize, len: usize| digits(b, at, len).ok_or_else(format);
    let year = i64::from(num(0, 4)?);
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);

    // Everything after the fixed-width `YYYY-MM-DDTHH:MM:SS`.
    let mut rest = b.get(19..).ok_or_else(format)?;
    let mut micros = 0u32;
    if let Some((b'.', after)) = rest.split_first() {
        let count = after.iter().take_while(|c| c.is_ascii_digit()).count();
        let (fraction, tail) = after.split_at_checked(count).ok_or_else(format)?;
        if fraction.is_empty() {
            return Err(format());
        }
        // Keep the first six digits, right-padded: ".5" is 500_000 micros.
        micros =
            fraction.iter().chain(std::iter::repeat(&b'0')).take(6).fold(0, |acc, d| acc * 10 + u32::from(d - b'0'));
        rest = tail;
    }
    let offset_seconds = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (digits(rest, 1, 2), digits(rest, 4, 2));
            let (Some(hours), Some(minutes)) = (hours, minutes) else {
                return Err(format());
            };
            if hours > 23 || minutes > 59 {
                return Err(TimestampError::Offset(hours, minutes));
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return Err(format()),
    };

    if !(1..=12).contains(&month) {
        return Err(TimestampError::Month(month));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(TimestampError::Day { year, month, day });
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(TimestampError::Time(hour, minute, second));
    }
    let local_seconds = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Ok((local_seconds - offset_seconds) * 1_000_000 + i64::from(micros))
}

/// Exactly `len` ASCII digits at `at` (no signs, unlike `str::parse`).
fn digits(b: &[u8], at: usize, len: usize) -> Option<u32> {
    let field = b.get(at..at.checked_add(len)?)?;
    field.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard
/// Hinnant's `days_from_civil`): years are shifted to start in March so the
/// leap day is the last day of the shifted year.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from((month + 9) % 12); // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`] (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = u32::try_from(day_of_year - (153 * shifted_month + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 }).unwrap_or(1);
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix microseconds as RFC 3339 in UTC, `2026-03-01T12:00:00Z`, with a
/// fraction only when there is one (`…:00.250000Z`); [`parse_rfc3339`]
/// reads it back to the same microsecond.
pub(crate) fn format_rfc3339(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if fraction != 0 {
        text.push_str(&format!(".{fraction:06}"));
    }
    text.push('Z');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_reads_back_to_the_same_microsecond() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400 * 1_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_rfc3339(1_767_225_600 * 1_000_000 + 250_000), "2026-01-01T00:00:00.250000Z");
        // Every day over eight centuries either side of the epoch, and odd
        // instants within them.
        let mut day = -300_000i64;
        while day < 300_000 {
            let at = day * 86_400_000_000 + (day.rem_euclid(997)) * 86_400_000 + day.rem_euclid(1_000_000);
            assert_eq!(parse_rfc3339(&format_rfc3339(at)), Ok(at), "{at}");
            day += 7;
        }
    }

    const DAY: i64 = 86_400 * 1_000_000;

    #[test]
    fn known_instants() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-02T00:00:00Z", DAY),
            ("1969-12-31T23:59:59Z", -1_000_000),
            ("2000-02-29T00:00:00Z", 951_782_400 * 1_000_000),
            ("2000-03-01T00:00:00Z", 951_868_800 * 1_000_000),
            ("2026-01-01T00:00:00Z", 1_767_225_600 * 1_000_000),
            ("2026-01-01T02:00:00+02:00", 1_767_225_600 * 1_000_000),
            ("2025-12-31T19:30:00-04:30", 1_767_225_600 * 1_000_000),
            ("2026-01-01t00:00:00z", 1_767_225_600 * 1_000_000),
            ("2026-01-01T00:00:00.5Z", 1_767_225_600 * 1_000_000 + 500_000),
            ("2026-01-01T00:00:00.123456789Z", 1_767_225_600 * 1_000_000 + 123_456),
            ("0000-03-01T00:00:00Z", -62_162_035_200 * 1_000_000),
            ("9999-12-31T23:59:59Z", 253_402_300_799 * 1_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn leap_years_follow_the_gregorian_rules() {
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_ok());
        for not_leap in ["2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2100-02-29T00:00:00Z"] {
            assert!(matches!(parse_rfc3339(not_leap), Err(TimestampError::Day { .. })), "{not_leap}");
        }
    }

    #[test]
    fn consecutive_days_are_one_day_apart_across_four_centuries() {
        let mut previous = days_from_civil(1899, 12, 31);
        for year in 1900..2300 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    let today = days_from_civil(year, month, day);
                    assert_eq!(today, previous + 1, "{year}-{month}-{day}");
                    previous = today;
                }
            }
        }
    }

    #[test]
    fn rejects_malformed_timestamps() {
        let bad = [
            "",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00:00Z",
            "2026-1-01T00:00:00Z",
            "+026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0200",
            "2026-01-01T00:00:00+02:0x",
            "2026-01-01T00:00:00Zjunk",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-12-31T23:59:60Z",
            "2026-01-01T00:00:00+24:00",
            "２０２６-01-01T00:00:00Z",
        ];
        for text in bad {
            assert!(parse_rfc3339(text).is_err(), "{text:?} should be rejected");
        }
    }
}
