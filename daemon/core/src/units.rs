//! Durations (`500ms`, `5s`, `2m`, `1h`) and sizes (`256Mi`, `1G`, `4096`).

use std::time::Duration;

/// `s` as an error shows it: in backticks, or escaped and in quotes when
/// it holds a control character (a newline must not split the one-line
/// errors berthd.toml and specs give, nor an escape reach a terminal raw).
fn quoted(s: &str) -> String {
    if s.chars().any(char::is_control) {
        format!("{s:?}")
    } else {
        format!("`{s}`")
    }
}

/// Parse `500ms`, `5s`, `2m`, `1h`, `1m30s`. A bare number is refused: the
/// unit is what makes a config readable.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let hint = "expected a duration like 500ms, 5s, 2m or 1h";
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("empty duration; {hint}"));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!("{}: {hint}", quoted(s)));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("{}: number too large", quoted(s)))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("{}: missing unit; {hint}", quoted(s))),
            other => {
                return Err(format!(
                    "{}: unknown unit {}; {hint}",
                    quoted(s),
                    quoted(other)
                ));
            }
        };
        total = total
            .checked_add(
                n.checked_mul(ms)
                    .ok_or_else(|| format!("{}: too large", quoted(s)))?,
            )
            .ok_or_else(|| format!("{}: too large", quoted(s)))?;
    }
    let ms = u64::try_from(total).map_err(|_| format!("{}: too large", quoted(s)))?;
    Ok(Duration::from_millis(ms))
}

/// The shortest exact form at millisecond precision: `2s`, `1500ms`, `2m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_string()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// Parse a byte size: `4096`, `512k`, `256Mi`, `1G`, `2Gi`. Decimal suffixes
/// (k, M, G) are powers of 1000, binary ones (Ki, Mi, Gi) powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let hint = "expected a size like 4096, 512Ki, 256Mi or 1G";
    let s = s.trim();
    let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(format!("{}: {hint}", quoted(s)));
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("{}: number too large", quoted(s)))?;
    let mult: u64 = match &s[digits..] {
        "" | "b" | "B" => 1,
        "k" | "K" | "kB" => 1_000,
        "Ki" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "Mi" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "Gi" => 1 << 30,
        "T" | "TB" => 1_000_000_000_000,
        "Ti" => 1 << 40,
        other => {
            return Err(format!(
                "{}: unknown unit {}; {hint}",
                quoted(s),
                quoted(other)
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{}: too large", quoted(s)))
}

pub mod duration_serde {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Millis(u64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Millis(ms) => Ok(Duration::from_millis(ms)),
            Repr::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

pub mod opt_duration_serde {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "duration_serde")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_one_line_whatever_the_input_holds() {
        for bad in ["1s\n2", "5x\u{1b}[2J", "\r\n", "1s\t2"] {
            for e in [
                parse_duration(bad).expect_err(bad),
                parse_size(bad).expect_err(bad),
            ] {
                assert!(!e.chars().any(char::is_control), "{bad:?}: {e:?}");
            }
        }
        assert_eq!(
            parse_duration("5x").expect_err("bad unit"),
            "`5x`: unknown unit `x`; expected a duration like 500ms, 5s, 2m or 1h",
            "plain input is shown as before"
        );
        assert_eq!(
            parse_duration("1s\n2").expect_err("a newline"),
            "\"1s\\n2\": expected a duration like 500ms, 5s, 2m or 1h"
        );
    }

    #[test]
    fn durations_round_trip() {
        for (text, ms) in [
            ("500ms", 500),
            ("5s", 5_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
        ] {
            let d = parse_duration(text).expect(text);
            assert_eq!(d, Duration::from_millis(ms), "{text}");
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(
            parse_duration("5d")
                .unwrap_err()
                .contains("unknown unit `d`")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256Mi"), Ok(256 << 20));
        assert_eq!(parse_size("10M"), Ok(10_000_000));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert!(parse_size("12X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("Mi").is_err());
        assert!(
            parse_size("99999999999Ti")
                .unwrap_err()
                .contains("too large")
        );
    }
}
