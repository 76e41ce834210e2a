//! `cove env …`: dev environments.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use cove_api::{
    CreateEnvironmentRequest, EnvEvent, EnvState, Environment, ExecRequest, ExecResult,
};

use crate::client::Client;
use crate::repo::Output;

/// Manage dev environments.
#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(subcommand)]
    pub command: EnvCommand,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment from a repository's devfile and wait until it runs.
    Create {
        /// OWNER/NAME (or NAME for your own repository).
        repo: String,
        /// Branch to work on (default: the repository's default branch).
        #[arg(long, conflicts_with = "new_branch")]
        branch: Option<String>,
        /// Work in a new branch created from --from.
        #[arg(long)]
        new_branch: Option<String>,
        /// Base of --new-branch (default: the default branch).
        #[arg(long, requires = "new_branch")]
        from: Option<String>,
        /// Devfile path in the repository.
        #[arg(long)]
        devfile: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Limits for containers whose devfile sets none: small, medium (default), large.
        #[arg(long)]
        size: Option<String>,
        /// Stop after this long without activity: 30m, 1h, 90s, 0 = never.
        #[arg(long, value_parser = parse_duration)]
        idle_timeout: Option<u64>,
        /// Also VS Code in the browser (`vscode`), or the terminal only (`terminal`); default:
        /// your `editor` setting.
        #[arg(long, value_parser = parse_editor)]
        editor: Option<cove_api::Editor>,
        /// Run it on an agent of this pool (the label `pool=NAME`; docs/agents.md).
        #[arg(long)]
        pool: Option<String>,
        /// Run it on an agent carrying this label, KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Return at once instead of waiting until running.
        #[arg(long)]
        no_wait: bool,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List environments.
    List {
        /// Only this repository (OWNER/NAME).
        #[arg(long)]
        repo: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show one environment (state, restart required, endpoints).
    Show {
        env: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Start a stopped environment.
    Start {
        env: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop an environment (runs preStop first). Volumes and /projects are kept.
    Stop {
        env: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Restart from the devfile in the workspace; volumes and /projects are kept.
    Restart {
        env: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Restart onto the devfile of the environment's branch in the repository (an outdated
    /// environment: that devfile changed since it was created); volumes and /projects are kept.
    Update {
        env: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Move an environment to another agent: stopped first (preStop runs), /projects and
    /// the devfile's persistent volumes copied there, started there, the old copy removed. A
    /// failed move leaves it where it was. Name the agent, or a pool or labels to place it by.
    Move {
        env: String,
        /// The agent to move it to (`cove agent list`; `embedded` for the server's own).
        #[arg(long, conflicts_with_all = ["pool", "labels"])]
        agent: Option<String>,
        /// An agent of this pool (the label `pool=NAME`).
        #[arg(long)]
        pool: Option<String>,
        /// An agent carrying this label, KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Return once the move has begun instead of waiting until it runs on the new agent.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete an environment, its containers and volumes.
    Delete {
        env: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Print a component's recent output.
    Logs {
        env: String,
        component: Option<String>,
        /// Keep printing new output.
        #[arg(short, long)]
        follow: bool,
        #[arg(long, default_value_t = 200)]
        tail: u32,
    },
    /// Run a command in a component: cove env exec ENV [--component C] -- CMD ARGS…
    /// With a terminal on both ends the command gets a TTY (no command: a login shell).
    Exec {
        env: String,
        #[arg(long)]
        component: Option<String>,
        /// Force a TTY (interactive) or not; default: a TTY when stdin and stdout are terminals.
        #[arg(long, overrides_with = "no_tty")]
        tty: bool,
        #[arg(long)]
        no_tty: bool,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Forward TCP from 127.0.0.1:LOCAL on this machine to REMOTE in the environment, through
    /// the server: cove env port-forward ENV 8000:8000 [3000 …] (LOCAL 0 picks a free port).
    /// Runs until interrupted.
    PortForward {
        env: String,
        /// LOCAL:REMOTE pairs (or PORT for the same port on both ends).
        #[arg(required = true)]
        ports: Vec<String>,
    },
    /// SSH into an environment with the system `ssh` (a shell, or COMMAND), through the
    /// server's SSH WebSocket; your key must be registered (`cove ssh-key add`).
    /// `--stdio` speaks SSH on standard input/output, for OpenSSH's ProxyCommand.
    Ssh {
        env: String,
        /// Bridge standard input/output to the environment's SSH endpoint (ProxyCommand).
        #[arg(long)]
        stdio: bool,
        /// Private key file for ssh (`-i`).
        #[arg(short = 'i', long)]
        identity: Option<String>,
        /// An extra ssh option (`-o NAME=VALUE`), repeatable.
        #[arg(short = 'o', long = "option")]
        options: Vec<String>,
        /// Force a TTY (`ssh -tt`).
        #[arg(short = 't', long)]
        tty: bool,
        /// The container to run in (default: the devfile's first container that mounts sources).
        #[arg(long)]
        container: Option<String>,
        #[arg(last = true)]
        command: Vec<String>,
    },
}

/// `30m`, `1h`, `90s`, `2d`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86400),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("`{text}` is not a duration like 30m, 1h, 90s or 0"))
}

fn repo_path(client: &Client, repo: &str) -> Result<String> {
    Ok(match repo.split_once('/') {
        Some((o, n)) => format!("{o}/{n}"),
        None => {
            let me: cove_api::User = client.get("/user")?;
            format!("{}/{repo}", me.username)
        }
    })
}

/// Find an environment by id or name.
fn resolve(client: &Client, env: &str) -> Result<Environment> {
    let all: Vec<Environment> = client.get("/environments")?;
    let hits: Vec<Environment> = all
        .into_iter()
        .filter(|e| e.id == env || e.name == env)
        .collect();
    match hits.len() {
        0 => bail!("no environment `{env}`: see `cove env list`"),
        1 => Ok(hits.into_iter().next().expect("one hit")),
        _ => bail!(
            "`{env}` names environments in several repositories ({}): use the id",
            hits.iter()
                .map(|e| format!("{} in {}", e.id, e.repo))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn parse_editor(s: &str) -> Result<cove_api::Editor, String> {
    cove_api::Editor::parse(s).ok_or_else(|| format!("{s:?}: use vscode or terminal"))
}

pub(crate) fn print_env(e: &Environment) {
    println!("{} ({})", e.name, e.id);
    println!("  repository:  {} @ {}", e.repo, e.branch);
    println!(
        "  state:       {}{}",
        e.state.as_str(),
        e.reason
            .as_deref()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default()
    );
    println!(
        "  devfile:     {}",
        e.devfile_path.as_deref().unwrap_or("(Cove's default)")
    );
    println!("  components:  {}", e.components.join(", "));
    if let Some(agent) = &e.agent {
        match &e.placement {
            Some(why) => println!("  agent:       {agent} ({why})"),
            None => println!("  agent:       {agent}"),
        }
        if let Some(backend) = &e.backend {
            println!("  backend:     {backend}");
        }
    }
    match &e.prebuilt_from {
        Some(sha) => println!("  start:       prebuilt from {sha}"),
        None => println!("  start:       cold"),
    }
    for ep in &e.endpoints {
        println!(
            "  endpoint:    {} :{} {} {}",
            ep.name,
            ep.port,
            ep.exposure,
            ep.url.as_deref().unwrap_or("")
        );
    }
    if let Some(url) = &e.editor_url {
        println!("  VS Code:     {url}");
    }
    if e.idle_timeout_secs > 0 {
        println!(
            "  idle stop:   after {} min without activity",
            e.idle_timeout_secs / 60
        );
    }
    if e.outdated {
        println!(
            "  OUTDATED: the devfile of branch {} changed (run `cove env update {}`)",
            e.branch, e.name
        );
    }
    if e.restart_required {
        println!(
            "  RESTART REQUIRED: the devfile in the workspace changed (run `cove env restart {}`)",
            e.name
        );
        if let Some(c) = &e.devfile_changes {
            for l in c.lines() {
                println!("    {l}");
            }
        }
    }
}

/// Poll until the environment leaves its transient state, printing its events.
pub(crate) fn wait(
    client: &Client,
    id: &str,
    want: EnvState,
    mut after: i64,
) -> Result<Environment> {
    let started = Instant::now();
    loop {
        print_events(client, id, &mut after);
        let env: Environment = match client.get(&format!("/environments/{id}")) {
            Ok(e) => e,
            Err(crate::client::ClientError::NotFound { .. }) if want == EnvState::Deleting => {
                bail!("deleted")
            }
            Err(e) => return Err(e.into()),
        };
        // a deletion is done when the environment is gone, not when it says "deleting"
        if env.state == want && want != EnvState::Deleting {
            // what the agent reported before the state changed (dotfiles, postStart output)
            // may have landed after the events were read above
            print_events(client, id, &mut after);
            return Ok(env);
        }
        if env.state == EnvState::Failed {
            print_events(client, id, &mut after);
            bail!(
                "environment {} failed: {}",
                env.name,
                env.reason.unwrap_or_default()
            );
        }
        if !env.state.is_transient() {
            bail!(
                "environment {} is {} (expected {})",
                env.name,
                env.state.as_str(),
                want.as_str()
            );
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!(
                "gave up waiting after 15 minutes; the environment is {}",
                env.state.as_str()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints the environment's events after `after` on stderr and moves `after` past them.
fn print_events(client: &Client, id: &str, after: &mut i64) {
    let events: Vec<EnvEvent> = client
        .get(&format!("/environments/{id}/events?after={after}"))
        .unwrap_or_default();
    for ev in &events {
        *after = (*after).max(ev.id);
        let mut lines = ev.message.lines();
        if let Some(first) = lines.next() {
            eprintln!("  {:<10} {first}", ev.kind);
        }
        for l in lines {
            eprintln!("             {l}");
        }
    }
}

pub(crate) fn last_event(client: &Client, id: &str) -> Result<i64> {
    let events: Vec<EnvEvent> = client.get(&format!("/environments/{id}/events"))?;
    Ok(events.last().map(|e| e.id).unwrap_or(0))
}

pub fn run(args: EnvArgs) -> Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let client = Client::from_env_or_config()?;
    match args.command {
        EnvCommand::Create {
            repo,
            branch,
            new_branch,
            from,
            devfile,
            name,
            size,
            idle_timeout,
            editor,
            pool,
            labels,
            no_wait,
            output,
        } => {
            let path = repo_path(&client, &repo)?;
            let wanted = wanted_labels(labels, pool)?;
            let req = CreateEnvironmentRequest {
                branch,
                new_branch,
                from,
                devfile_path: devfile,
                name,
                size,
                idle_timeout_secs: idle_timeout,
                editor,
                labels: wanted,
            };
            let env: Environment = client.post(&format!("/repos/{path}/environments"), &req)?;
            eprintln!(
                "creating environment {} ({}) for {} @ {}",
                env.name, env.id, env.repo, env.branch
            );
            let env = if no_wait {
                env
            } else {
                wait(&client, &env.id, EnvState::Running, 0)?
            };
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&env)?),
                Output::Text => print_env(&env),
            }
        }
        EnvCommand::List { repo, output } => {
            let query = repo.map(|r| format!("?repo={r}")).unwrap_or_default();
            let envs: Vec<Environment> = client.get(&format!("/environments{query}"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&envs)?),
                Output::Text => {
                    let h = ["ID", "NAME", "REPOSITORY@BRANCH", "STATE", "NOTE"];
                    println!(
                        "{:<14} {:<24} {:<28} {:<10} {}",
                        h[0], h[1], h[2], h[3], h[4]
                    );
                    for e in envs {
                        let note = match (e.restart_required, e.outdated) {
                            (true, true) => "restart required, outdated",
                            (true, false) => "restart required",
                            (false, true) => "outdated",
                            (false, false) => "",
                        };
                        println!(
                            "{:<14} {:<24} {:<28} {:<10} {note}",
                            e.id,
                            e.name,
                            format!("{}@{}", e.repo, e.branch),
                            e.state.as_str()
                        );
                    }
                }
            }
        }
        EnvCommand::Show { env, output } => {
            let e = resolve(&client, &env)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&e)?),
                Output::Text => print_env(&e),
            }
        }
        EnvCommand::Start { env, no_wait } => {
            action(&client, &env, "start", EnvState::Running, no_wait)?
        }
        EnvCommand::Stop { env, no_wait } => {
            action(&client, &env, "stop", EnvState::Stopped, no_wait)?
        }
        EnvCommand::Restart { env, no_wait } => {
            action(&client, &env, "restart", EnvState::Running, no_wait)?
        }
        EnvCommand::Update { env, no_wait } => {
            action(&client, &env, "update", EnvState::Running, no_wait)?
        }
        EnvCommand::Move {
            env,
            agent,
            pool,
            labels,
            no_wait,
        } => move_env(&client, &env, agent, wanted_labels(labels, pool)?, no_wait)?,
        EnvCommand::Delete { env, yes } => {
            let e = resolve(&client, &env)?;
            if !yes {
                bail!(
                    "this deletes {} and its /projects volume for good; add --yes to confirm",
                    e.name
                );
            }
            client.delete(&format!("/environments/{}", e.id))?;
            match wait(&client, &e.id, EnvState::Deleting, 0) {
                Err(err) if err.to_string() == "deleted" => eprintln!("deleted {}", e.name),
                Err(err) => return Err(err),
                Ok(_) => {}
            }
        }
        EnvCommand::Logs {
            env,
            component,
            follow,
            tail,
        } => {
            let e = resolve(&client, &env)?;
            let comp = component
                .map(|c| format!("&component={c}"))
                .unwrap_or_default();
            let mut seen =
                client.get_text(&format!("/environments/{}/logs?tail={tail}{comp}", e.id))?;
            print!("{seen}");
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let now =
                    client.get_text(&format!("/environments/{}/logs?tail={tail}{comp}", e.id))?;
                // print what is new at the end
                let new = match now.find(seen.lines().last().unwrap_or("\u{0}")) {
                    _ if now == seen => "",
                    Some(i) => {
                        let from = i + seen.lines().last().map(str::len).unwrap_or(0);
                        now.get(from..).unwrap_or("").trim_start_matches('\n')
                    }
                    None => now.as_str(),
                };
                if !new.is_empty() {
                    println!("{new}");
                    std::io::stdout().flush().ok();
                }
                seen = now;
            }
        }
        EnvCommand::PortForward { env, ports } => {
            let forwards = ports
                .iter()
                .map(|p| crate::forward::parse_forward(p))
                .collect::<Result<Vec<_>>>()?;
            let e = resolve(&client, &env)?;
            crate::forward::port_forward(client.url(), client.token(), &e.id, &e.name, &forwards)?;
        }
        EnvCommand::Ssh {
            env,
            stdio,
            identity,
            options,
            tty,
            container,
            command,
        } => {
            if stdio {
                // an id needs no lookup (ProxyCommand runs this for every connection)
                let looks_like_id = env.len() == 12
                    && env.starts_with('e')
                    && env[1..].chars().all(|c| c.is_ascii_hexdigit());
                let id = if looks_like_id {
                    env
                } else {
                    resolve(&client, &env)?.id
                };
                crate::ssh::stdio(&client, &id)?;
                return Ok(ExitCode::SUCCESS);
            }
            let e = resolve(&client, &env)?;
            let mut extra: Vec<String> = Vec::new();
            for o in options {
                extra.push("-o".into());
                extra.push(o);
            }
            if tty {
                extra.push("-tt".into());
            }
            return crate::ssh::env_ssh(
                &client,
                &e,
                container.as_deref(),
                identity.as_deref(),
                &extra,
                &command,
            );
        }
        EnvCommand::Exec {
            env,
            component,
            tty,
            no_tty,
            command,
        } => {
            let e = resolve(&client, &env)?;
            if tty || (!no_tty && crate::terminal::interactive()) {
                let code = crate::terminal::run(
                    client.url(),
                    client.token(),
                    &e.id,
                    component.as_deref(),
                    &command,
                )?;
                return Ok(ExitCode::from(
                    u8::try_from(code.clamp(0, 255)).unwrap_or(1),
                ));
            }
            if command.is_empty() {
                bail!(
                    "give a command after `--` (or run from a terminal for an interactive shell)"
                );
            }
            let r: ExecResult = client.post(
                &format!("/environments/{}/exec", e.id),
                &ExecRequest { component, command },
            )?;
            print!("{}", r.stdout);
            eprint!("{}", r.stderr);
            std::io::stdout().flush().ok();
            return Ok(ExitCode::from(
                u8::try_from(r.exit_code.clamp(0, 255)).unwrap_or(1),
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--label K=V` (repeatable) and `--pool NAME` as one label set.
fn wanted_labels(
    labels: Vec<String>,
    pool: Option<String>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut wanted = std::collections::BTreeMap::new();
    for l in labels {
        let Some((k, v)) = l.split_once('=') else {
            anyhow::bail!("--label {l:?}: use KEY=VALUE");
        };
        wanted.insert(k.to_string(), v.to_string());
    }
    if let Some(p) = pool {
        wanted.insert("pool".to_string(), p);
    }
    Ok(wanted)
}

/// `cove env move`: stops the environment when it runs, asks for the move, and waits until it
/// runs on its new agent (or the move failed and it stayed where it was).
fn move_env(
    client: &Client,
    env: &str,
    agent: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
    no_wait: bool,
) -> Result<()> {
    if agent.is_none() && labels.is_empty() {
        bail!("say where to: --agent NAME, --pool NAME or --label KEY=VALUE");
    }
    let mut e = resolve(client, env)?;
    if e.state != EnvState::Stopped {
        eprintln!("stopping {} first", e.name);
        let after = last_event(client, &e.id)?;
        let _: Environment = client.post(
            &format!("/environments/{}/stop", e.id),
            &serde_json::json!({}),
        )?;
        e = wait(client, &e.id, EnvState::Stopped, after)
            .map_err(|err| anyhow!("stop of {}: {err}", e.name))?;
    }
    let after = last_event(client, &e.id)?;
    let req = cove_api::MoveEnvironmentRequest { agent, labels };
    let moving: Environment = client.post(&format!("/environments/{}/move", e.id), &req)?;
    eprintln!(
        "{}: {}",
        moving.name,
        moving.reason.as_deref().unwrap_or("moving")
    );
    if no_wait {
        return Ok(());
    }
    let done = match wait(client, &e.id, EnvState::Running, after) {
        Ok(done) => done,
        // a failed move puts it back, stopped, with the reason
        Err(err) => {
            let now: Environment = client.get(&format!("/environments/{}", e.id))?;
            bail!(
                "move of {}: {}",
                e.name,
                now.reason.unwrap_or_else(|| err.to_string())
            );
        }
    };
    print_env(&done);
    Ok(())
}

fn action(client: &Client, env: &str, verb: &str, want: EnvState, no_wait: bool) -> Result<()> {
    let e = resolve(client, env)?;
    let after = last_event(client, &e.id)?;
    let _: Environment = client.post(
        &format!("/environments/{}/{verb}", e.id),
        &serde_json::json!({}),
    )?;
    eprintln!("{verb}: {}", e.name);
    if no_wait {
        return Ok(());
    }
    let done =
        wait(client, &e.id, want, after).map_err(|err| anyhow!("{verb} of {}: {err}", e.name))?;
    print_env(&done);
    Ok(())
}
