//! Conversions between LDAP GeneralizedTime and SCIM's RFC 3339 dateTime.

/// `20261122144200Z` or `20261122144200.123Z` → `2026-11-22T14:42:00Z`. `None` when not that shape.
pub fn generalized_to_rfc3339(g: &str) -> Option<String> {
    let b = g.as_bytes();
    if b.len() < 15 || !b[..14].iter().all(u8::is_ascii_digit) || !g.ends_with('Z') {
        return None;
    }
    let frac = &g[14..g.len() - 1];
    let frac = match frac.strip_prefix('.').or_else(|| frac.strip_prefix(',')) {
        Some(f) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => f,
        None if frac.is_empty() => "",
        _ => return None,
    };
    // Built by hand: two of these per rendered user, and `format!` cost ten times as much.
    let mut out = String::with_capacity(21 + frac.len());
    for (range, sep) in [
        (0..4, '-'),
        (4..6, '-'),
        (6..8, 'T'),
        (8..10, ':'),
        (10..12, ':'),
    ] {
        out.push_str(&g[range]);
        out.push(sep);
    }
    out.push_str(&g[12..14]);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out.push('Z');
    Some(out)
}

/// `2026-11-22T14:42:00Z` (optionally with fraction) → `20261122144200Z`. Offsets other than Z are refused.
pub fn rfc3339_to_generalized(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.ends_with(['Z', 'z']) {
        return None;
    }
    let shape_ok = b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':';
    let digits = [0..4, 5..7, 8..10, 11..13, 14..16, 17..19];
    if !shape_ok
        || !digits
            .iter()
            .all(|r| b[r.clone()].iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    let frac = match frac.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => format!(".{f}"),
        None if frac.is_empty() => String::new(),
        _ => return None,
    };
    Some(format!(
        "{}{}{}{}{}{}{frac}Z",
        &s[0..4],
        &s[5..7],
        &s[8..10],
        &s[11..13],
        &s[14..16],
        &s[17..19]
    ))
}

/// Seconds and milliseconds since the Unix epoch → `2026-11-22T14:42:00.123Z`.
pub fn unix_to_rfc3339(secs: u64, millis: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from a day count (proleptic Gregorian; the algorithm counts 400-year eras from 0000-03-01).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::with_capacity(24);
    push_padded(&mut out, year.unsigned_abs(), 4);
    out.push('-');
    push_padded(&mut out, month.unsigned_abs(), 2);
    out.push('-');
    push_padded(&mut out, day.unsigned_abs(), 2);
    out.push('T');
    push_padded(&mut out, rem / 3600, 2);
    out.push(':');
    push_padded(&mut out, rem % 3600 / 60, 2);
    out.push(':');
    push_padded(&mut out, rem % 60, 2);
    out.push('.');
    push_padded(&mut out, u64::from(millis), 3);
    out.push('Z');
    out
}

/// Appends `n` in decimal, zero-padded to at least `width` digits (as `{n:0width$}` would).
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = i.min(digits.len() - width.min(digits.len()));
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_to_rfc3339() {
        assert_eq!(unix_to_rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(unix_to_rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(
            unix_to_rfc3339(1_795_358_520, 123),
            "2026-11-22T14:42:00.123Z"
        );
        assert_eq!(
            unix_to_rfc3339(4_107_542_399, 999),
            "2100-02-28T23:59:59.999Z"
        );
    }

    #[test]
    fn padded_digits() {
        for (n, width, want) in [
            (0, 2, "00"),
            (7, 3, "007"),
            (59, 2, "59"),
            (2026, 4, "2026"),
            (12345, 4, "12345"),
            (u64::MAX, 2, "18446744073709551615"),
        ] {
            let mut out = String::new();
            push_padded(&mut out, n, width);
            assert_eq!(out, want);
            assert_eq!(out, format!("{n:0width$}"));
        }
    }

    #[test]
    fn both_ways() {
        assert_eq!(
            generalized_to_rfc3339("20261122144200Z").as_deref(),
            Some("2026-11-22T14:42:00Z")
        );
        assert_eq!(
            generalized_to_rfc3339("20261122144200.5Z").as_deref(),
            Some("2026-11-22T14:42:00.5Z")
        );
        assert_eq!(
            generalized_to_rfc3339("20261122144200,25Z").as_deref(),
            Some("2026-11-22T14:42:00.25Z")
        );
        assert_eq!(generalized_to_rfc3339("20261122144200.Z"), None);
        assert_eq!(generalized_to_rfc3339("20261122144200.5xZ"), None);
        assert_eq!(generalized_to_rfc3339("2026112214Z"), None);
        assert_eq!(generalized_to_rfc3339("2026112214420xZ"), None);
        assert_eq!(
            rfc3339_to_generalized("2026-11-22T14:42:00Z").as_deref(),
            Some("20261122144200Z")
        );
        assert_eq!(
            rfc3339_to_generalized("2026-11-22T14:42:00.25Z").as_deref(),
            Some("20261122144200.25Z")
        );
        assert_eq!(rfc3339_to_generalized("2026-11-22T14:42:00+01:00"), None);
        assert_eq!(rfc3339_to_generalized("2026-11-22 14:42:00Z"), None);
        assert_eq!(rfc3339_to_generalized("x"), None);
        assert_eq!(rfc3339_to_generalized("2026-11-22T14:42:00é"), None);
    }
}
