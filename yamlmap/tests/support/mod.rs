//! Shared by the hostile-input tests of `yamlmap`, `devfiles` and
//! `workflows` (included with `#[path]`): the bounds every parse must stay
//! within, a runner that parses on a thread with a small stack, a driver
//! that measures the peak memory of a parse in a child process, and
//! generators of hostile YAML shapes.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// The acceptance bounds of issue 13: any input up to the size cap is
/// accepted or refused within this much memory (peak resident set of the
/// whole process that parses, program and input included)...
pub const MAX_RSS: usize = 64 << 20;

/// ...and this much time. Release builds are held to 1 s; unoptimized test
/// builds on a shared machine get a margin (docs/security.md records the
/// release numbers).
pub fn max_time() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(1)
    }
}

/// Stack of the thread the parses run on: a quarter of a tokio worker's
/// 2 MiB, so no nesting the parsers accept can overflow a server thread.
pub const STACK: usize = 512 * 1024;

/// What one parse cost.
#[derive(Debug)]
pub struct Cost {
    pub time: Duration,
}

/// Run `f` on a fresh thread with a [`STACK`]-byte stack; return its result
/// and how long it took.
pub fn measure<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, Cost) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let start = Instant::now();
            let out = f();
            (
                out,
                Cost {
                    time: start.elapsed(),
                },
            )
        })
        .expect("spawn")
        .join()
        .expect("the parse panicked or overflowed its stack")
}

/// Assert the bounds, naming the shape.
pub fn assert_bounded(shape: &str, input_len: usize, cost: &Cost) {
    assert!(
        cost.time <= max_time(),
        "{shape} ({input_len} bytes) took {:?} (limit {:?})",
        cost.time,
        max_time()
    );
}

/// Print what a shape cost (shown with `--nocapture`; docs/security.md
/// quotes these numbers from a release run).
pub fn report(shape: &str, input_len: usize, cost: &Cost) {
    eprintln!(
        "{shape:<40} {:>8} bytes {:>8.1} ms",
        input_len,
        cost.time.as_secs_f64() * 1000.0,
    );
}

/// Set in a child process to the file it must parse.
const CHILD_INPUT: &str = "COVE_PEAK_RSS_INPUT";

/// `VmHWM` (peak resident set) of this process, in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kb * 1024
}

/// The `main` of a `harness = false` test that measures memory. In the
/// parent: for every `(shape, text)`, run this same binary as a child that
/// parses `text` with `parse` and reports its peak resident set; assert
/// each is at most [`MAX_RSS`]. In the child: do that one parse.
pub fn peak_rss_main(shapes: Vec<(String, String)>, parse: fn(&str) -> String) {
    if let Ok(path) = std::env::var(CHILD_INPUT) {
        let text = std::fs::read_to_string(&path).expect("child input");
        let outcome = parse(&text);
        drop(text);
        println!("PEAK_RSS={}", peak_rss());
        println!("OUTCOME={}", outcome.replace('\n', " "));
        return;
    }
    let dir = std::env::temp_dir().join(format!("cove-peak-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let exe = std::env::current_exe().expect("current exe");
    let mut worst = 0;
    for (i, (shape, text)) in shapes.iter().enumerate() {
        let path = dir.join(format!("{i}.yaml"));
        std::fs::write(&path, text).expect("write input");
        let out = std::process::Command::new(&exe)
            .env(CHILD_INPUT, &path)
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{shape}: the child failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let rss: usize = stdout
            .lines()
            .find_map(|l| l.strip_prefix("PEAK_RSS="))
            .and_then(|v| v.parse().ok())
            .expect("PEAK_RSS line");
        let outcome = stdout
            .lines()
            .find_map(|l| l.strip_prefix("OUTCOME="))
            .unwrap_or("");
        eprintln!(
            "{shape:<40} {:>8} bytes  peak RSS {:>6.1} MiB  {}",
            text.len(),
            rss as f64 / (1 << 20) as f64,
            outcome.chars().take(100).collect::<String>()
        );
        assert!(
            rss <= MAX_RSS,
            "{shape} ({} bytes): peak RSS {} MiB (limit {} MiB)",
            text.len(),
            rss >> 20,
            MAX_RSS >> 20
        );
        worst = worst.max(rss);
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{} shapes, worst peak RSS {:.1} MiB",
        shapes.len(),
        worst as f64 / (1 << 20) as f64
    );
}

/// The largest input the parsers read.
pub const CAP: usize = 1 << 20;

// ---- hostile shapes (YAML text at indentation 0) ----

/// "Billion laughs": `levels` anchors, each a list of `fanout` aliases to
/// the previous one, as top-level keys `l0`..; the last anchor is `a{levels-1}`.
pub fn alias_tree(levels: usize, fanout: usize) -> String {
    let mut s = format!("l0: &a0 [{}]\n", vec!["lol"; fanout].join(","));
    for i in 1..levels {
        let prev = format!("*a{}", i - 1);
        s.push_str(&format!(
            "l{i}: &a{i} [{}]\n",
            vec![prev.as_str(); fanout].join(",")
        ));
    }
    s
}

/// `depth` nested flow sequences around one scalar.
pub fn deep_flow(depth: usize) -> String {
    format!("{}x{}", "[".repeat(depth), "]".repeat(depth))
}

/// `depth` nested flow mappings around one scalar.
pub fn deep_flow_map(depth: usize) -> String {
    format!("{}x{}", "{a: ".repeat(depth), "}".repeat(depth))
}

/// `depth` nested block mappings (`k:` lines, two more spaces each).
pub fn deep_block(depth: usize) -> String {
    let mut s = String::new();
    for i in 0..depth {
        s.push_str(&" ".repeat(2 * i));
        s.push_str("k:\n");
    }
    s.push_str(&" ".repeat(2 * depth));
    s.push_str("x\n");
    s
}

/// `depth` nested block sequences (`- ` prefixes on one line).
pub fn deep_dashes(depth: usize) -> String {
    format!("{}x\n", "- ".repeat(depth))
}

/// A mapping with `n` distinct keys.
pub fn wide_map(n: usize) -> String {
    (0..n).map(|i| format!("k{i}: v\n")).collect()
}

/// A mapping with `n` keys that are all the same (one duplicate error).
pub fn duplicate_keys(n: usize) -> String {
    "k: v\n".repeat(n)
}

/// A flow sequence of `n` one-letter scalars.
pub fn long_flow_seq(n: usize) -> String {
    format!("[{}]", vec!["x"; n].join(","))
}

/// Indent every line of `text` by `n` spaces.
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// Repeat `unit` until the text is about `bytes` long.
pub fn fill(unit: &str, bytes: usize) -> String {
    unit.repeat((bytes / unit.len().max(1)).max(1))
}
