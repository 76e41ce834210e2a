//! Kubernetes resource quantities (`512Mi`, `1G`, `500m`, `'2'`), as used by
//! `memoryLimit`, `cpuLimit` and `volume.size`.

/// Parse a quantity into its value in base units (bytes for memory, cores
/// for CPU). Returns `None` for text that is not a quantity.
pub fn parse(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let number: f64 = num.parse().ok()?;
    if number < 0.0 || !number.is_finite() {
        return None;
    }
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// Memory quantity in whole bytes.
pub fn bytes(text: &str) -> Option<u64> {
    parse(text).map(|v| v.ceil() as u64)
}

/// CPU quantity in millicores.
pub fn millicores(text: &str) -> Option<u64> {
    parse(text).map(|v| (v * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(bytes("512Mi"), Some(512 * 1024 * 1024));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("8G"), Some(8_000_000_000));
        assert_eq!(millicores("500m"), Some(500));
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores("0.5"), Some(500));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("lots"), None);
        assert_eq!(bytes("12Qi"), None);
    }
}
