//! Microseconds since the Unix epoch as a UTC calendar date and time
//! (proleptic Gregorian, years 1 to 9999: what Python's `datetime` holds).
//!
//! Every record the API returns carries its creation time, stored as
//! microseconds. Python's `EPOCH + timedelta(microseconds=us)` costs about
//! 0.5 µs, most of a GET's record; splitting the value here and calling
//! `datetime(...)` with the fields costs about a third of that.

/// `0001-01-01T00:00:00Z`, the first instant a `datetime` holds.
pub const MIN_MICROS: i64 = -62_135_596_800_000_000;
/// `9999-12-31T23:59:59.999999Z`, the last one.
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A UTC instant's calendar fields, in `datetime`'s argument order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub microsecond: u32,
}

/// The fields of `us`, clamped to [`MIN_MICROS`, `MAX_MICROS`] (a stored value
/// out of range reads as the first or last instant, never fails).
pub fn civil_from_micros(us: i64) -> Civil {
    let us = us.clamp(MIN_MICROS, MAX_MICROS);
    let days = us.div_euclid(MICROS_PER_DAY);
    let in_day = us.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds = in_day / 1_000_000;
    Civil {
        year,
        month,
        day,
        hour: (seconds / 3600) as u8,
        minute: (seconds / 60 % 60) as u8,
        second: (seconds % 60) as u8,
        microsecond: (in_day % 1_000_000) as u32,
    }
}

/// Days since 1970-01-01 -> (year, month, day): Howard Hinnant's
/// `civil_from_days` (eras of 400 years, March-based years).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Civil {
        Civil {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            microsecond: us,
        }
    }

    #[test]
    fn known_instants() {
        assert_eq!(civil_from_micros(0), at(1970, 1, 1, 0, 0, 0, 0));
        assert_eq!(civil_from_micros(-1), at(1969, 12, 31, 23, 59, 59, 999_999));
        assert_eq!(
            civil_from_micros(1_795_343_598_167_259),
            at(2026, 11, 22, 10, 33, 18, 167_259)
        );
        // 2000-02-29T12:00:00Z: a leap day of a year divisible by 400.
        assert_eq!(
            civil_from_micros(951_825_600_000_000),
            at(2000, 2, 29, 12, 0, 0, 0)
        );
        assert_eq!(civil_from_micros(MIN_MICROS), at(1, 1, 1, 0, 0, 0, 0));
        assert_eq!(
            civil_from_micros(MAX_MICROS),
            at(9999, 12, 31, 23, 59, 59, 999_999)
        );
    }

    #[test]
    fn out_of_range_is_clamped() {
        assert_eq!(civil_from_micros(i64::MIN), civil_from_micros(MIN_MICROS));
        assert_eq!(
            civil_from_micros(MIN_MICROS - 1),
            civil_from_micros(MIN_MICROS)
        );
        assert_eq!(civil_from_micros(i64::MAX), civil_from_micros(MAX_MICROS));
        assert_eq!(
            civil_from_micros(MAX_MICROS + 1),
            civil_from_micros(MAX_MICROS)
        );
    }

    #[test]
    fn consecutive_days_step_by_one() {
        // Every day of years 1..9999 once: each follows the previous by one day.
        let mut prev = civil_from_micros(MIN_MICROS);
        let mut days = MIN_MICROS / MICROS_PER_DAY + 1;
        while days * MICROS_PER_DAY <= MAX_MICROS {
            let c = civil_from_micros(days * MICROS_PER_DAY);
            let next_in_month =
                c.year == prev.year && c.month == prev.month && c.day == prev.day + 1;
            let next_month = c.day == 1
                && ((c.year == prev.year && c.month == prev.month + 1)
                    || (c.year == prev.year + 1 && c.month == 1 && prev.month == 12));
            assert!(next_in_month || next_month, "{prev:?} -> {c:?}");
            if next_month {
                let leap = prev.year % 4 == 0 && (prev.year % 100 != 0 || prev.year % 400 == 0);
                let length = match prev.month {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(prev.day, length, "{prev:?} -> {c:?}");
            }
            prev = c;
            days += 1;
        }
        assert_eq!((prev.year, prev.month, prev.day), (9999, 12, 31));
    }
}
