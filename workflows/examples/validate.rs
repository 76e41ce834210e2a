//! `cargo run -p workflows --example validate -- FILE...`: print the
//! diagnostics (and, with `--json`, the normalized workflow) of each file.
//! A development aid; the CLI's `cove workflow validate` is the real entry.

fn main() -> std::process::ExitCode {
    let mut json = false;
    let mut failed = false;
    for arg in std::env::args().skip(1) {
        if arg == "--json" {
            json = true;
            continue;
        }
        let text = match std::fs::read_to_string(&arg) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{arg}: {e}");
                failed = true;
                continue;
            }
        };
        match workflows::validate_file(&arg, &text) {
            Ok((w, warnings)) => {
                for d in warnings {
                    println!("{d}");
                }
                println!("{arg}: ok ({} actions)", w.actions.len());
                if json {
                    println!("{}", serde_json::to_string_pretty(&w).unwrap_or_default());
                }
            }
            Err(diags) => {
                failed = true;
                for d in diags {
                    println!("{d}");
                }
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
