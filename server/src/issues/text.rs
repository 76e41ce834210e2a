//! Pure text rules of issues: `@user` mentions, `#N` references, `Fixes #N`-style closing
//! keywords and the branch name made from an issue.

/// Longest user name a mention may name (as `crate::names`).
const MAX_NAME: usize = 64;

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Whether the byte before `i` ends a word (start of text or not a name character). `@` in
/// `a@b.c` is an address, not a mention; `#` in `a#1` is not a reference.
fn at_boundary(bytes: &[u8], i: usize) -> bool {
    i == 0 || !(is_name_byte(bytes[i - 1]) || bytes[i - 1] == b'/')
}

/// The distinct user names mentioned as `@name`, in order of first mention. Names inside
/// code spans and fenced blocks count too (kept simple: a mention is what the text says).
pub fn mentions(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'@' && at_boundary(bytes, i) {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && is_name_byte(bytes[end]) {
                end += 1;
            }
            // A sentence's full stop is not part of the name.
            let mut name = &text[start..end];
            while name.ends_with('.') || name.ends_with('-') {
                name = &name[..name.len() - 1];
            }
            if !name.is_empty()
                && name.len() <= MAX_NAME
                && name.as_bytes()[0].is_ascii_alphanumeric()
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_string());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads `#digits` at `i`; the number and the index after it.
fn number_at(bytes: &[u8], i: usize) -> Option<(i64, usize)> {
    if bytes.get(i) != Some(&b'#') {
        return None;
    }
    let mut end = i + 1;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    if end == i + 1 || end - i > 16 {
        return None;
    }
    if end < bytes.len() && is_name_byte(bytes[end]) && bytes[end] != b'.' && bytes[end] != b'-' {
        return None;
    }
    let n: i64 = std::str::from_utf8(&bytes[i + 1..end]).ok()?.parse().ok()?;
    (n > 0).then_some((n, end))
}

/// Every `#N` referenced, distinct, in order.
pub fn references(text: &str) -> Vec<i64> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    for i in 0..bytes.len() {
        if bytes[i] == b'#' && at_boundary(bytes, i) {
            if let Some((n, _)) = number_at(bytes, i) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
    }
    out
}

const KEYWORDS: [&str; 9] = [
    "fix", "fixes", "fixed", "close", "closes", "closed", "resolve", "resolves", "resolved",
];

/// The issues a text closes: `Fixes #N`, `Closes #N`, `Resolves #N` (any case, with an
/// optional colon; `Fixes #1, #2` and `Fixes #1 and #2` close both), distinct, in order.
pub fn closing_references(text: &str) -> Vec<i64> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphabetic() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < bytes.len() && bytes[end].is_ascii_alphabetic() {
            end += 1;
        }
        if KEYWORDS.contains(&&lower[i..end]) {
            let mut j = end;
            if bytes.get(j) == Some(&b':') {
                j += 1;
            }
            // One or more `#N`, separated by spaces, commas or `and`.
            let mut first = true;
            loop {
                let mut k = j;
                while k < bytes.len() && matches!(bytes[k], b' ' | b'\t' | b',') {
                    k += 1;
                }
                if !first && lower[k..].starts_with("and ") {
                    k += 4;
                    while k < bytes.len() && bytes[k] == b' ' {
                        k += 1;
                    }
                }
                if first && k == j {
                    break;
                }
                match number_at(bytes, k) {
                    Some((n, after)) => {
                        if !out.contains(&n) {
                            out.push(n);
                        }
                        j = after;
                        first = false;
                    }
                    None => break,
                }
            }
        }
        i = end;
    }
    out
}

/// `issue-N-slug`: the title's letters and digits, lowercased, runs of anything else as one
/// `-`, at most 40 characters of slug.
pub fn branch_name(number: i64, title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("issue-{number}")
    } else {
        format!("issue-{number}-{slug}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_names_after_an_at_at_a_word_start() {
        assert_eq!(
            mentions("@bob please look, cc @carol. Mail a@b.example; @bob again; @-x @"),
            vec!["bob", "carol"]
        );
        assert_eq!(mentions("(@dave) and @e_f-g.h"), vec!["dave", "e_f-g.h"]);
        assert!(mentions("no one").is_empty());
    }

    #[test]
    fn references_and_closing_keywords() {
        assert_eq!(
            references("see #3, #12 and a#4 or #5x or #7."),
            vec![3, 12, 7]
        );
        assert_eq!(closing_references("Fixes #3"), vec![3]);
        assert_eq!(
            closing_references("fix: #4 and closes #5, #6"),
            vec![4, 5, 6]
        );
        assert_eq!(
            closing_references("Resolves #1 and #2\nRelated to #9"),
            vec![1, 2]
        );
        assert_eq!(
            closing_references("prefixes #3, fixes#4, see #5"),
            Vec::<i64>::new()
        );
        assert_eq!(closing_references("CLOSED #8"), vec![8]);
    }

    #[test]
    fn branch_names_are_slugs() {
        assert_eq!(
            branch_name(7, "Add a copyright footer!"),
            "issue-7-add-a-copyright-footer"
        );
        assert_eq!(branch_name(2, "¡¿?!"), "issue-2");
        assert!(branch_name(1, &"x".repeat(300)).len() <= 50);
    }
}
