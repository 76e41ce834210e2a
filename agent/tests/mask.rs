//! Masking corpus: every tested secret, in every tested encoding (plain,
//! base64 std/url at every alignment, wrapped base64, percent-encoding, hex,
//! JSON escaping), embedded in ordinary text and fed to the streaming masker
//! cut at every split point (and in three pieces, and byte by byte). The
//! output must never contain the secret in any tested form, and the text
//! around it must come out unchanged.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use cove_agent::mask::{patterns_for, LineSplitter, MaskSet, MASK, MIN_SECRET_LEN};

const SECRETS: &[&str] = &[
    "hunter2-password",
    "p@ss w/rd&=?+%!",
    "AKIAIOSFODNN7EXAMPLE",
    "-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA3\nq8vxYz+/09==\n-----END KEY-----",
    "line-one\r\nline-two",
    "пароль-секрет",
    "tok",
];

fn long_secret() -> String {
    (0..180)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect()
}

fn percent(v: &[u8], upper: bool, form: bool) -> String {
    let mut out = String::new();
    for &b in v {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else if form && b == b' ' {
            out.push('+');
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// The ways a build prints a secret: (label, printed text).
fn forms(secret: &str) -> Vec<(String, String)> {
    let b = secret.as_bytes();
    let mut f = vec![
        ("plain".to_string(), secret.to_string()),
        ("base64".into(), STANDARD.encode(b)),
        (
            "base64 of echo".into(),
            STANDARD.encode([b, b"\n"].concat()),
        ),
        ("base64url".into(), URL_SAFE.encode(b)),
        ("percent upper".into(), percent(b, true, false)),
        ("percent lower".into(), percent(b, false, false)),
        ("form".into(), percent(b, true, true)),
        (
            "hex".into(),
            b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
        ),
        (
            "HEX".into(),
            b.iter().map(|x| format!("{x:02X}")).collect::<String>(),
        ),
        ("json".into(), {
            let j = serde_json::to_string(secret).unwrap();
            j[1..j.len() - 1].to_string()
        }),
        (
            "base64 wrapped".into(),
            STANDARD
                .encode(b)
                .as_bytes()
                .chunks(76)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ];
    for (prefix, suffix) in [("x", "yz"), ("xy", "z"), ("xyz", ""), ("", "q")] {
        let data = [prefix.as_bytes(), b, suffix.as_bytes()].concat();
        f.push((
            format!("base64 inside {prefix:?}..{suffix:?}"),
            STANDARD.encode(&data),
        ));
        f.push((
            format!("base64url inside {prefix:?}..{suffix:?}"),
            URL_SAFE.encode(&data),
        ));
    }
    f
}

/// What must never appear in the output for this secret and this form.
fn forbidden(secret: &str, form: &str) -> Vec<String> {
    let mut v = Vec::new();
    if secret.len() < MIN_SECRET_LEN {
        return v;
    }
    v.push(secret.to_string());
    v.extend(
        secret
            .lines()
            .filter(|l| l.len() >= MIN_SECRET_LEN)
            .map(str::to_string),
    );
    // the printed form itself, and each of its lines
    v.push(form.to_string());
    v.extend(form.lines().filter(|l| l.len() >= 12).map(str::to_string));
    v
}

fn run(set: &Arc<MaskSet>, pieces: &[&[u8]]) -> String {
    let mut m = set.stream();
    let mut out = Vec::new();
    for p in pieces {
        m.write(p, &mut out);
    }
    m.finish(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn check_form(set: &Arc<MaskSet>, secret: &str, label: &str, form: &str) -> usize {
    let text = format!("before: {form} :after\n");
    let bytes = text.as_bytes();
    let bad = forbidden(secret, form);
    let mut cases = 0;
    let mut verify = |out: String, how: &str| {
        cases += 1;
        assert!(
            out.starts_with("before: ") && out.ends_with(" :after\n"),
            "{label} of {secret:?} ({how}): surrounding text changed: {out:?}"
        );
        for f in &bad {
            assert!(
                !out.contains(f.as_str()),
                "{label} of {secret:?} ({how}): output {out:?} contains {f:?}"
            );
        }
        if secret.len() >= MIN_SECRET_LEN {
            assert!(
                out.contains(MASK),
                "{label} of {secret:?} ({how}): nothing masked in {out:?}"
            );
        }
    };
    verify(run(set, &[bytes]), "one write");
    let step = if bytes.len() > 120 { 7 } else { 1 };
    for i in (0..=bytes.len()).step_by(step) {
        verify(
            run(set, &[&bytes[..i], &bytes[i..]]),
            &format!("split at {i}"),
        );
        let j = i + (bytes.len() - i) / 2;
        verify(
            run(set, &[&bytes[..i], &bytes[i..j], &bytes[j..]]),
            &format!("split at {i} and {j}"),
        );
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    verify(run(set, &singles), "byte by byte");
    cases
}

#[test]
fn corpus_never_leaks_a_tested_form() {
    let long = long_secret();
    let mut secrets: Vec<&str> = SECRETS.to_vec();
    secrets.push(&long);
    let set = Arc::new(MaskSet::new(secrets.iter().map(|s| s.as_bytes())));
    let mut cases = 0;
    for secret in &secrets {
        for (label, form) in forms(secret) {
            if secret.len() < MIN_SECRET_LEN {
                continue;
            }
            cases += check_form(&set, secret, &label, &form);
        }
    }
    assert!(cases > 10_000, "only {cases} cases");
}

#[test]
fn secret_spanning_lines_and_interleaved_with_other_text() {
    let secret = "-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA3\nq8vxYz+/09==\n-----END KEY-----";
    let set = Arc::new(MaskSet::new([secret]));
    // printed line by line with other output in between
    let mixed = "-----BEGIN KEY-----\nnoise\nMIIEpAIBAAKCAQEA3\nmore noise\n";
    assert_eq!(
        run(&set, &[mixed.as_bytes()]),
        "***\nnoise\n***\nmore noise\n"
    );
    // with CRLF line ends
    let crlf = secret.replace('\n', "\r\n");
    let out = run(&set, &[crlf.as_bytes()]);
    for line in secret.lines() {
        assert!(!out.contains(line), "{out:?}");
    }
    // split inside a line, and lines cut after masking
    let whole = format!("key: {secret}\ndone\n");
    let (a, b) = whole.split_at(30);
    let out = run(&set, &[a.as_bytes(), b.as_bytes()]);
    let mut lines = LineSplitter::default();
    let lines = lines.push(out.as_bytes());
    assert_eq!(lines, vec!["key: ***".to_string(), "done".to_string()]);
}

#[test]
fn non_secret_text_passes_unchanged() {
    let set = Arc::new(MaskSet::new(SECRETS.iter().map(|s| s.as_bytes())));
    let corpus = "   Compiling serde v1.0.200\n\
        warning: unused variable `password`\n\
        test result: ok. 42 passed; 0 failed\n\
        GET /api/v1/items?page=2&size=50 200\n\
        aHVudGVy and hunter and password and AKIA and BEGIN KEY\n\
        %2F %3D base64: SGVsbG8gd29ybGQ=\n\
        tok tok tok\n\
        \u{1F600} unicode ok \u{4E2D}\u{6587}\n";
    for cut in 0..corpus.len() {
        let out = run(
            &set,
            &[&corpus.as_bytes()[..cut], &corpus.as_bytes()[cut..]],
        );
        assert_eq!(out, corpus, "cut at {cut}");
    }
}

#[test]
fn short_values_are_documented_not_masked() {
    assert!(patterns_for(b"tok").is_empty());
    assert!(!patterns_for(b"toke").is_empty());
    let set = Arc::new(MaskSet::new(["tok"]));
    assert_eq!(set.mask_str("tok token"), "tok token");
}

#[test]
fn holds_back_at_most_longest_pattern_minus_one() {
    let set = Arc::new(MaskSet::new(SECRETS.iter().map(|s| s.as_bytes())));
    let mut m = set.stream();
    let mut out = Vec::new();
    let mut fed = 0usize;
    // a long stream of prefixes of the secret: each write may hold back a
    // little, never more than the longest pattern
    for i in 0..2_000 {
        let chunk = &"hunter2-passwor"[..(i % 15) + 1];
        m.write(chunk.as_bytes(), &mut out);
        fed += chunk.len();
        assert!(
            fed - out.len() < set.longest_pattern(),
            "held {}",
            fed - out.len()
        );
    }
    m.finish(&mut out);
    assert_eq!(out.len(), fed);
}

/// The log-stream → masked-lines boundary as snapshots: `writes` are fed in
/// order through a masker and a line splitter; each output line is shown.
fn check(secrets: &[&str], writes: &[&str], expect: expect_test::Expect) {
    let set = Arc::new(MaskSet::new(secrets));
    let mut m = set.stream();
    let mut lines = LineSplitter::default();
    let mut shown = String::new();
    let mut buf = Vec::new();
    for w in writes {
        buf.clear();
        m.write(w.as_bytes(), &mut buf);
        for l in lines.push(&buf) {
            shown.push_str(&format!("{l}\n"));
        }
    }
    buf.clear();
    m.finish(&mut buf);
    for l in lines.push(&buf).into_iter().chain(lines.flush()) {
        shown.push_str(&format!("{l}\n"));
    }
    expect.assert_eq(&shown);
}

#[test]
fn snapshots() {
    use expect_test::expect;
    check(
        &["hunter2-password"],
        &[
            "login hun",
            "ter2-pass",
            "word ok\n",
            "again: hunter2-password\n",
        ],
        expect![[r#"
            login *** ok
            again: ***
        "#]],
    );
    check(
        &["-----BEGIN-----\nAAAABBBB\n-----END-----"],
        &[
            "key:\n-----BEGIN-----\nAAAA",
            "BBBB\n-----END-----\n",
            "then AAAABBBB alone\n",
        ],
        expect![[r#"
            key:
            ***
            then *** alone
        "#]],
    );
    check(
        &["p@ss word"],
        &["url=https://u:p%40ss%20word@host form=p%40ss+word b64=cEBzcyB3b3Jk hex=7040737320776f7264\n"],
        expect![[r#"
            url=https://u:***@host form=*** b64=*** hex=***
        "#]],
    );
    check(
        &["abc", "tok3n-value"],
        &[
            "abc is too short to mask; tok3n-",
            "value is not\n",
            "partial tok3n-val",
        ],
        expect![[r#"
            abc is too short to mask; *** is not
            partial tok3n-val
        "#]],
    );
}
