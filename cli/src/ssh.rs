//! SSH: `cove ssh-key add|list|remove` (your public keys), `cove env ssh ENV [-- COMMAND]`
//! (runs the system `ssh` with Cove's proxy), `cove env ssh --stdio ENV` (the SSH byte stream
//! over the server's authenticated WebSocket `GET /api/v1/environments/{env}/ssh`, for
//! OpenSSH's `ProxyCommand`), and `cove config-ssh` (a managed block in `~/.ssh/config`
//! with a `Host cove.<env>` per environment of yours). See docs/ssh.md.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use cove_api::{AddSshKeyRequest, Environment, SshKeyInfo};

use crate::client::Client;

/// Largest key file `cove ssh-key add` reads.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// Markers of the block `cove config-ssh` owns in `~/.ssh/config`.
pub const BLOCK_START: &str = "# --- cove start";
pub const BLOCK_END: &str = "# --- cove end";

#[derive(Debug, Args)]
pub struct SshKeyArgs {
    #[command(subcommand)]
    pub command: SshKeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum SshKeyCommand {
    /// Register a public key: a .pub file, or `-` (the default) for standard input.
    Add {
        #[arg(default_value = "-")]
        file: String,
        /// A name for the key (default: the key's comment).
        #[arg(long)]
        name: Option<String>,
    },
    /// List your keys (`--all`: every user's, administrators).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Remove a key by id (`--any`: any user's key, administrators).
    Remove {
        id: i64,
        #[arg(long)]
        any: bool,
    },
}

pub fn run_keys(args: SshKeyArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    match args.command {
        SshKeyCommand::Add { file, name } => {
            let text = read_key_text(&file)?;
            let key: SshKeyInfo = client.post(
                "/user/ssh-keys",
                &AddSshKeyRequest {
                    public_key: text,
                    name,
                },
            )?;
            println!(
                "added SSH key {} {} ({}) as {:?}",
                key.id, key.fingerprint, key.algorithm, key.name
            );
            Ok(())
        }
        SshKeyCommand::List { all } => {
            let keys: Vec<SshKeyInfo> =
                client.get(if all { "/ssh-keys" } else { "/user/ssh-keys" })?;
            for k in keys {
                // like `ssh-keygen -lf`: fingerprint, name, (algorithm)
                let user = if all {
                    format!("{}\t", k.username)
                } else {
                    String::new()
                };
                println!(
                    "{}\t{user}{} {} ({})",
                    k.id, k.fingerprint, k.name, k.algorithm
                );
            }
            Ok(())
        }
        SshKeyCommand::Remove { id, any } => {
            if any {
                client.delete(&format!("/ssh-keys/{id}"))?;
            } else {
                client.delete(&format!("/user/ssh-keys/{id}"))?;
            }
            println!("removed SSH key {id}");
            Ok(())
        }
    }
}

fn read_key_text(file: &str) -> Result<String> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin()
            .take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .context("cannot read the public key from standard input")?;
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("cannot open {file}"))?
            .take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {file} (a .pub file is text)"))?;
    }
    Ok(text)
}

/// The `Host` name of an environment in `~/.ssh/config`.
pub fn host_alias(e: &Environment, all: &[Environment]) -> String {
    let clash = all.iter().filter(|o| o.name == e.name).count() > 1;
    if clash {
        format!("cove.{}", e.id)
    } else {
        format!("cove.{}", e.name)
    }
}

/// The `ProxyCommand` that reaches environment `id` through this server.
fn proxy_command(id: &str) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the cove binary")?;
    let exe = exe.display().to_string();
    if exe.contains('"') || exe.contains('%') {
        bail!("the path of the cove binary ({exe}) contains characters ssh_config cannot quote");
    }
    Ok(format!("\"{exe}\" env ssh --stdio {id}"))
}

/// Options that make OpenSSH use Cove's proxy for environment `e` (in `container`, else the
/// main one), checking the server's host key against `known_hosts`.
fn ssh_options(
    client: &Client,
    e: &Environment,
    container: Option<&str>,
    known_hosts: &Path,
) -> Result<Vec<(String, String)>> {
    let user = match container {
        Some(c) => format!("{}.{c}", e.id),
        None => e.id.clone(),
    };
    let known = known_hosts.display().to_string();
    if known.contains('"') {
        bail!("the path {known} contains a quote, which ssh_config cannot hold");
    }
    Ok(vec![
        ("User".into(), user),
        ("ProxyCommand".into(), proxy_command(&e.id)?),
        // one host key for the whole server, whatever the environment, pinned from the API
        ("HostKeyAlias".into(), host_key_alias(client.url())),
        ("UserKnownHostsFile".into(), format!("\"{known}\"")),
        ("StrictHostKeyChecking".into(), "yes".into()),
        ("ServerAliveInterval".into(), "30".into()),
    ])
}

/// Fetches the server's SSH host key (`GET /api/v1/ssh/host-key`) and records it for this
/// server in `known_hosts` beside the CLI's config (other servers' lines are kept); the path.
pub fn pin_host_key(client: &Client) -> Result<PathBuf> {
    let key: cove_api::SshHostKey = client
        .get("/ssh/host-key")
        .context("cannot read the server's SSH host key")?;
    let path = crate::client::config_path()?
        .parent()
        .map(|d| d.join("known_hosts"))
        .context("no directory for the known-hosts file")?;
    let alias = host_key_alias(client.url());
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let mut text: String = existing
        .lines()
        .filter(|l| !l.starts_with(&format!("{alias} ")))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("{alias} {}\n", key.public_key));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if text != existing {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

fn host_key_alias(url: &str) -> String {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/')
        .replace(['/', ':'], "_");
    format!("cove-server.{host}")
}

/// `cove env ssh ENV [-- COMMAND]`: the system `ssh` with Cove's proxy; its exit status.
pub fn env_ssh(
    client: &Client,
    e: &Environment,
    container: Option<&str>,
    identity: Option<&str>,
    ssh_args: &[String],
    command: &[String],
) -> Result<ExitCode> {
    let mut cmd = std::process::Command::new("ssh");
    if let Some(c) = container {
        if !e.components.iter().any(|x| x == c) {
            bail!(
                "environment {} has no container {c} (it has: {})",
                e.name,
                e.components.join(", ")
            );
        }
    }
    let known_hosts = pin_host_key(client)?;
    for (k, v) in ssh_options(client, e, container, &known_hosts)? {
        cmd.arg("-o").arg(format!("{k}={v}"));
    }
    if let Some(i) = identity {
        cmd.arg("-i").arg(i);
    }
    cmd.args(ssh_args);
    cmd.arg(format!("cove.{}", e.name));
    if !command.is_empty() {
        cmd.arg("--");
        cmd.args(command);
    }
    let status = cmd
        .status()
        .context("cannot run ssh: install an OpenSSH client (Debian: openssh-client)")?;
    Ok(ExitCode::from(
        status
            .code()
            .map_or(255, |c| u8::try_from(c).unwrap_or(255)),
    ))
}

/// `cove env ssh --stdio ENV`: bridges standard input and output to the environment's SSH
/// endpoint over the server's WebSocket, until either side closes.
pub fn stdio(client: &Client, env_id: &str) -> Result<()> {
    crate::forward::bridge(
        client.url(),
        client.token(),
        &format!("/api/v1/environments/{env_id}/ssh"),
        "SSH",
        std::io::stdin(),
        std::io::stdout(),
    )
}

/// The user's environments as `Host` entries.
pub fn config_block(client: &Client, envs: &[Environment], known_hosts: &Path) -> Result<String> {
    let mut out = String::new();
    out.push_str(BLOCK_START);
    out.push('\n');
    out.push_str("# Written by `cove config-ssh`; it replaces this block each time it runs.\n");
    for e in envs {
        out.push_str(&format!("Host {}\n", host_alias(e, envs)));
        for (k, v) in ssh_options(client, e, None, known_hosts)? {
            out.push_str(&format!("  {k} {v}\n"));
        }
    }
    out.push_str(BLOCK_END);
    out.push('\n');
    Ok(out)
}

/// `existing` with its managed block replaced by `block` (appended when there is none).
pub fn replace_block(existing: &str, block: &str) -> Result<String> {
    let start = existing.find(BLOCK_START);
    let end = existing.find(BLOCK_END);
    Ok(match (start, end) {
        (Some(s), Some(e)) if e > s => {
            let after = &existing[e + BLOCK_END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{block}{after}", &existing[..s])
        }
        (None, None) => {
            let mut out = existing.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(block);
            out
        }
        _ => bail!(
            "the file has an unmatched `{BLOCK_START}` / `{BLOCK_END}` marker: fix it by hand first"
        ),
    })
}

#[derive(Debug, Args)]
pub struct ConfigSshArgs {
    /// The ssh config file to write (default: ~/.ssh/config).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Print the block instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cove config-ssh`.
pub fn config_ssh(args: ConfigSshArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    let me: cove_api::User = client.get("/user")?;
    let all: Vec<Environment> = client.get("/environments")?;
    let mine: Vec<Environment> = all.into_iter().filter(|e| e.owner == me.username).collect();
    let known_hosts = pin_host_key(&client)?;
    let block = config_block(&client, &mine, &known_hosts)?;
    if args.dry_run {
        print!("{block}");
        return Ok(());
    }
    let path = match args.file {
        Some(p) => p,
        None => {
            let home = std::env::var_os("HOME").context("HOME is not set: pass --file")?;
            Path::new(&home).join(".ssh").join("config")
        }
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let updated = replace_block(&existing, &block)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("cove-tmp");
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(updated.as_bytes())?;
        f.sync_all()?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "wrote {} host(s) to {}: {}",
        mine.len(),
        path.display(),
        mine.iter()
            .map(|e| host_alias(e, &mine))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_replaced_idempotently() {
        let block = format!("{BLOCK_START}\nHost cove.a\n{BLOCK_END}\n");
        let first = replace_block("Host other\n  User me\n", &block).unwrap();
        assert_eq!(first, format!("Host other\n  User me\n\n{block}"));
        let again = replace_block(&first, &block).unwrap();
        assert_eq!(again, first);
        let other = format!("{BLOCK_START}\nHost cove.b\n{BLOCK_END}\n");
        let changed = replace_block(&format!("{first}Host last\n"), &other).unwrap();
        assert_eq!(
            changed,
            format!("Host other\n  User me\n\n{other}Host last\n")
        );
        assert_eq!(replace_block("", &block).unwrap(), block);
        assert!(replace_block(&format!("x\n{BLOCK_START}\n"), &block).is_err());
    }
}
