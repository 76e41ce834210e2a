//! Branch rules on `git push`: the receive-pack request's commands are read before git starts
//! (the pkt-lines up to the first flush, replayed to git unchanged), each command gets its
//! [`PushCheck`], and those that are not plainly allowed are written to a verdict file that
//! Cove's `update` hook (installed in `data_dir/hooks`, passed with `-c core.hooksPath`)
//! consults per ref. The hook runs after the pack is received (in git's quarantine), so a
//! fast-forward check sees the pushed commits; it refuses with Cove's message, which git
//! prints as `remote: cove: …`, and git leaves the ref untouched. The report git sends back
//! says `hook declined` for such a ref; [`rewrite_report`] puts Cove's reason there, so the
//! client prints `! [remote rejected] main (protected branch: …)`.

use std::path::{Path, PathBuf};

use cove_api::BranchRule;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::rules::{check_update, PushCheck};

/// Most bytes of commands (the part of a push request before its pack) read ahead.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024 * 1024;

/// One command of a push: update `ref_name` from `old` to `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushCommand {
    pub old: String,
    pub new: String,
    pub ref_name: String,
}

/// The commands of a push request and the bytes they were read from (to replay to git).
#[derive(Debug, Default)]
pub struct Commands {
    pub raw: Vec<u8>,
    pub commands: Vec<PushCommand>,
    /// The client asked for `side-band` or `side-band-64k`.
    pub side_band: bool,
}

/// Why the commands of a push could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CommandsError {
    #[error("malformed push request: {0}")]
    Malformed(&'static str),
    #[error("push request commands larger than {MAX_COMMAND_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn is_hex_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads pkt-lines up to the first flush: `shallow` lines, then `<old> <new> <ref>` commands
/// (the first with `\0<capabilities>`). An empty request (end of stream first) has no
/// commands.
pub async fn read_commands<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Commands, CommandsError> {
    let mut out = Commands::default();
    loop {
        let mut head = [0u8; 4];
        match reader.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && out.raw.is_empty() => {
                return Ok(out)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(CommandsError::Malformed("ends inside its commands"))
            }
            Err(e) => return Err(e.into()),
        }
        out.raw.extend_from_slice(&head);
        let len = std::str::from_utf8(&head)
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or(CommandsError::Malformed("bad pkt-line length"))?;
        if len == 0 {
            return Ok(out);
        }
        if !(4..=65520).contains(&len) {
            return Err(CommandsError::Malformed("bad pkt-line length"));
        }
        if out.raw.len() + len > MAX_COMMAND_BYTES {
            return Err(CommandsError::TooLarge);
        }
        let start = out.raw.len();
        out.raw.resize(start + len - 4, 0);
        reader
            .read_exact(&mut out.raw[start..])
            .await
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    CommandsError::Malformed("ends inside its commands")
                } else {
                    e.into()
                }
            })?;
        let payload = &out.raw[start..];
        let (line, caps) = match payload.iter().position(|&b| b == 0) {
            Some(nul) => (&payload[..nul], Some(&payload[nul + 1..])),
            None => (payload, None),
        };
        if let Some(caps) = caps {
            let caps = String::from_utf8_lossy(caps);
            out.side_band = caps
                .split_whitespace()
                .any(|c| c == "side-band-64k" || c == "side-band");
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| CommandsError::Malformed("command is not UTF-8"))?
            .trim_end_matches('\n');
        if line.starts_with("shallow ") {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let (Some(old), Some(new), Some(ref_name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CommandsError::Malformed(
                "command is not `<old> <new> <ref>`",
            ));
        };
        if !is_hex_id(old) || !is_hex_id(new) || ref_name.is_empty() {
            return Err(CommandsError::Malformed(
                "command is not `<old> <new> <ref>`",
            ));
        }
        out.commands.push(PushCommand {
            old: old.to_ascii_lowercase(),
            new: new.to_ascii_lowercase(),
            ref_name: ref_name.to_string(),
        });
    }
}

/// The refs of a push that the rules refuse or accept only as fast-forwards, with the reason.
#[derive(Debug, Default)]
pub struct Verdicts {
    pub refs: Vec<(String, PushCheck)>,
    /// The repository is a mirror: every ref is refused with the mirror's message alone
    /// (no pointer to branch rules).
    pub mirror: bool,
}

impl Verdicts {
    pub fn for_push(
        rules: &[BranchRule],
        commands: &[PushCommand],
        pusher_is_owner: bool,
    ) -> Verdicts {
        let refs = commands
            .iter()
            .filter_map(|c| {
                match check_update(rules, &c.ref_name, &c.old, &c.new, false, pusher_is_owner) {
                    PushCheck::Allow => None,
                    check => Some((c.ref_name.clone(), check)),
                }
            })
            .collect();
        Verdicts {
            refs,
            mirror: false,
        }
    }

    /// A mirror of `url` (`crate::forge::mirror`) refuses every ref of a user's push.
    pub fn mirror(commands: &[PushCommand], url: &str) -> Verdicts {
        let message = format!("this repository is a mirror of {url}; push to the upstream");
        Verdicts {
            refs: commands
                .iter()
                .map(|c| (c.ref_name.clone(), PushCheck::Refuse(message.clone())))
                .collect(),
            mirror: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    fn reason(&self, ref_name: &str) -> Option<&str> {
        self.refs
            .iter()
            .find(|(r, _)| r == ref_name)
            .and_then(|(_, c)| match c {
                PushCheck::Allow => None,
                PushCheck::Refuse(m) | PushCheck::FastForwardOnly(m) => Some(m.as_str()),
            })
    }

    /// The verdict file the hook reads: `<ref>\t<refuse|ff>\t<message>` per line.
    fn file_text(&self) -> String {
        let mut text = String::new();
        for (name, check) in &self.refs {
            let (kind, message) = match check {
                PushCheck::Allow => continue,
                PushCheck::Refuse(m) if self.mirror => ("mirror", m),
                PushCheck::Refuse(m) => ("refuse", m),
                PushCheck::FastForwardOnly(m) => ("ff", m),
            };
            let message = message.replace(['\t', '\n', '\r'], " ");
            text.push_str(&format!("{name}\t{kind}\t{message}\n"));
        }
        text
    }
}

/// Cove's `update` hook (git runs it once per ref, with the ref, old and new ids).
const UPDATE_HOOK: &str = r#"#!/bin/sh
# Cove branch rules: written by cove-server for the pushes it serves; do not edit.
[ -n "$COVE_PUSH_VERDICTS" ] || exit 0
if [ ! -r "$COVE_PUSH_VERDICTS" ]; then
  echo "cove: the branch rules of this push could not be read; try again" >&2
  exit 1
fi
while IFS='	' read -r name kind message; do
  [ "$name" = "$1" ] || continue
  case $kind in
    refuse) ;;
    mirror) echo "cove: $message" >&2; exit 1 ;;
    ff) git merge-base --is-ancestor "$2" "$3" 2>/dev/null && exit 0 ;;
    *) exit 0 ;;
  esac
  echo "cove: $message" >&2
  echo "cove: see the repository's branch rules (cove repo rules list)" >&2
  exit 1
done < "$COVE_PUSH_VERDICTS"
exit 0
"#;

/// Runs the hook once without verdicts (it answers 0 at once): an error when it cannot be
/// executed, so that the push is refused rather than let through unchecked.
pub fn check_hook_runs(hook: &Path) -> std::io::Result<()> {
    let status = std::process::Command::new(hook)
        .arg("refs/heads/cove-hook-probe")
        .env_remove("COVE_PUSH_VERDICTS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "the branch-rule hook {} cannot run ({e}); is the data directory mounted noexec? \
                     pushes that touch protected branches are refused until it can",
                    hook.display()
                ),
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the branch-rule hook {} failed its self-check ({status})",
            hook.display()
        )))
    }
}

/// What a push with verdicts needs: the hook directory and this push's verdict file (removed
/// on drop).
pub struct PushGuard {
    hooks: PathBuf,
    verdicts_file: tempfile::NamedTempFile,
    pub verdicts: Verdicts,
}

impl PushGuard {
    /// Writes the hook (if missing or changed) and the verdict file under `data_dir`.
    pub fn prepare(data_dir: &Path, verdicts: Verdicts) -> std::io::Result<PushGuard> {
        // Absolute: git resolves a relative hooks path against the repository directory.
        let data_dir = std::path::absolute(data_dir)?;
        let hooks = data_dir.join("hooks");
        std::fs::create_dir_all(&hooks)?;
        let hook = hooks.join("update");
        if std::fs::read_to_string(&hook).ok().as_deref() != Some(UPDATE_HOOK) {
            let mut tmp = tempfile::NamedTempFile::new_in(&hooks)?;
            std::io::Write::write_all(&mut tmp, UPDATE_HOOK.as_bytes())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o755))?;
            }
            tmp.persist(&hook).map_err(|e| e.error)?;
        }
        // Fail closed: git silently skips a hook it cannot execute (a data directory mounted
        // `noexec`, a hook made non-executable), which would let protected refs through.
        check_hook_runs(&hook)?;
        let tmp_dir = data_dir.join("tmp").join("push-verdicts");
        std::fs::create_dir_all(&tmp_dir)?;
        let mut verdicts_file = tempfile::NamedTempFile::new_in(&tmp_dir)?;
        std::io::Write::write_all(&mut verdicts_file, verdicts.file_text().as_bytes())?;
        Ok(PushGuard {
            hooks,
            verdicts_file,
            verdicts,
        })
    }

    /// Adds the hook configuration to `git` (before its subcommand) and the verdict file.
    pub fn configure(&self, cmd: &mut tokio::process::Command) {
        let mut config = std::ffi::OsString::from("core.hooksPath=");
        config.push(self.hooks.as_os_str());
        cmd.arg("-c").arg(config);
        cmd.env("COVE_PUSH_VERDICTS", self.verdicts_file.path());
    }
}

fn pkt(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(format!("{:04x}", payload.len() + 4).as_bytes());
    out.extend_from_slice(payload);
}

/// Splits a pkt-line stream into payloads (`None` for a flush); `None` if malformed.
fn pkt_lines(mut data: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let len = usize::from_str_radix(std::str::from_utf8(data.get(..4)?).ok()?, 16).ok()?;
        if len == 0 {
            out.push(None);
            data = &data[4..];
            continue;
        }
        if len < 4 || len > data.len() {
            return None;
        }
        out.push(Some(&data[4..len]));
        data = &data[len..];
    }
    Some(out)
}

/// Puts Cove's reason into the report-status lines `ng <ref> hook declined` of the refs the
/// rules refused. Returns the new report and whether a ref was refused by a rule; a report
/// it cannot read is returned unchanged.
pub fn rewrite_report(report: &[u8], verdicts: &Verdicts, side_band: bool) -> (Vec<u8>, bool) {
    let mut refused = false;
    let mut rewrite_status = |status: &[u8]| -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for line in pkt_lines(status)? {
            let Some(line) = line else {
                out.extend_from_slice(b"0000");
                continue;
            };
            let text = String::from_utf8_lossy(line);
            let reason = text
                .trim_end_matches('\n')
                .strip_prefix("ng ")
                .and_then(|rest| rest.strip_suffix(" hook declined"))
                .and_then(|name| verdicts.reason(name).map(|r| (name, r)));
            match reason {
                Some((name, reason)) => {
                    refused = true;
                    pkt(&mut out, format!("ng {name} {reason}\n").as_bytes());
                }
                None => pkt(&mut out, line),
            }
        }
        Some(out)
    };
    if !side_band {
        return match rewrite_status(report) {
            Some(out) => (out, refused),
            None => (report.to_vec(), false),
        };
    }
    let Some(packets) = pkt_lines(report) else {
        return (report.to_vec(), false);
    };
    let mut status = Vec::new();
    let mut out = Vec::new();
    for packet in &packets {
        match packet {
            Some([1, data @ ..]) => status.extend_from_slice(data),
            Some(other) => pkt(&mut out, other),
            None => {}
        }
    }
    let Some(status) = rewrite_status(&status) else {
        return (report.to_vec(), false);
    };
    for chunk in status.chunks(995) {
        let mut payload = vec![1u8];
        payload.extend_from_slice(chunk);
        pkt(&mut out, &payload);
    }
    out.extend_from_slice(b"0000");
    (out, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str) -> BranchRule {
        BranchRule {
            pattern: pattern.into(),
            require_pull_request: true,
            required_approvals: 0,
            required_checks: Vec::new(),
            merge_roles: Vec::new(),
            merge_users: Vec::new(),
            allow_force_push: false,
            allow_deletion: false,
            require_up_to_date: false,
        }
    }

    #[tokio::test]
    async fn commands_are_read_up_to_the_flush() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let mut body = Vec::new();
        pkt(
            &mut body,
            format!("{a} {b} refs/heads/main\0report-status side-band-64k agent=git/2\n")
                .as_bytes(),
        );
        pkt(&mut body, format!("{b} {a} refs/heads/dev\n").as_bytes());
        body.extend_from_slice(b"0000PACK....");
        let mut reader = &body[..];
        let got = read_commands(&mut reader).await.unwrap();
        assert!(got.side_band);
        assert_eq!(got.commands.len(), 2);
        assert_eq!(got.commands[1].ref_name, "refs/heads/dev");
        assert_eq!(reader, b"PACK....", "the pack is left to be streamed");
        assert_eq!(got.raw, body[..body.len() - 8]);
        let mut bad = &b"00zz"[..];
        assert!(read_commands(&mut bad).await.is_err());
        let mut empty = &b""[..];
        assert!(read_commands(&mut empty).await.unwrap().commands.is_empty());
    }

    #[tokio::test]
    async fn commands_are_bounded() {
        let a = "a".repeat(40);
        let line = format!("{a} {a} refs/heads/{}\n", "x".repeat(900));
        let mut body = Vec::new();
        while body.len() <= MAX_COMMAND_BYTES {
            pkt(&mut body, line.as_bytes());
        }
        body.extend_from_slice(b"0000");
        let mut reader = &body[..];
        assert!(matches!(
            read_commands(&mut reader).await,
            Err(CommandsError::TooLarge)
        ));
        // Cut off inside the commands, or a line that is not a command: malformed.
        let mut cut = &body[..100];
        assert!(matches!(
            read_commands(&mut cut).await,
            Err(CommandsError::Malformed(_))
        ));
        let mut junk = Vec::new();
        pkt(&mut junk, b"hello world\n");
        let mut junk = &junk[..];
        assert!(matches!(
            read_commands(&mut junk).await,
            Err(CommandsError::Malformed(_))
        ));
    }

    #[test]
    fn a_hook_that_cannot_run_refuses_the_push() {
        let dir = tempfile::tempdir().expect("tempdir");
        let verdicts = Verdicts::default();
        let guard = PushGuard::prepare(dir.path(), verdicts).expect("a runnable hook");
        drop(guard);
        let hook = std::path::absolute(dir.path())
            .unwrap()
            .join("hooks")
            .join("update");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = PushGuard::prepare(dir.path(), Verdicts::default())
                .err()
                .expect("a hook that cannot run refuses the push");
            assert!(err.to_string().contains("cannot run"), "{err}");
        }
    }

    #[test]
    fn the_report_gets_coves_reason() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let verdicts = Verdicts::for_push(
            &[rule("main")],
            &[
                PushCommand {
                    old: a.clone(),
                    new: b.clone(),
                    ref_name: "refs/heads/main".into(),
                },
                PushCommand {
                    old: a,
                    new: b,
                    ref_name: "refs/heads/dev".into(),
                },
            ],
            true,
        );
        let mut status = Vec::new();
        pkt(&mut status, b"unpack ok\n");
        pkt(&mut status, b"ng refs/heads/main hook declined\n");
        pkt(&mut status, b"ok refs/heads/dev\n");
        status.extend_from_slice(b"0000");
        let (plain, refused) = rewrite_report(&status, &verdicts, false);
        assert!(refused);
        let text = String::from_utf8_lossy(&plain);
        assert!(
            text.contains("ng refs/heads/main protected branch: changes to `main` must go through a pull request\n"),
            "{text}"
        );
        assert!(text.contains("ok refs/heads/dev"));
        // The same inside side-band packets, next to a progress message.
        let mut banded = Vec::new();
        pkt(&mut banded, b"\x02cove: refused\n");
        let mut payload = vec![1u8];
        payload.extend_from_slice(&status);
        pkt(&mut banded, &payload);
        banded.extend_from_slice(b"0000");
        let (out, refused) = rewrite_report(&banded, &verdicts, true);
        assert!(refused);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("\x02cove: refused"), "{text}");
        assert!(text.contains("must go through a pull request"), "{text}");
        assert!(text.ends_with("0000"));
        // Unreadable reports are left alone.
        assert_eq!(
            rewrite_report(b"zz", &verdicts, true),
            (b"zz".to_vec(), false)
        );
    }
}
