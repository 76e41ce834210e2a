//! The `cove-server` binary: configuration, logging, signals.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use cove_server::config::{redact_url, FileConfig};
use cove_server::{Config, Server};

/// Cove's server: REST API, git hosting and the store.
#[derive(Debug, Parser)]
#[command(name = "cove-server", version)]
struct Args {
    /// TOML config file (keys: data_dir, listen, database_url, public_url, max_push_bytes, metrics_listen,
    /// push_deadline_secs, max_job_log_bytes, [retention], [jobs], [auth], [packages], [environments],
    /// [notify]; docs/server.md).
    #[arg(long, env = "COVE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, repositories).
    #[arg(long, env = "COVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on, HOST:PORT (default 127.0.0.1:8080).
    #[arg(long, env = "COVE_LISTEN")]
    listen: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB (default: SQLite in the data dir).
    #[arg(long, env = "COVE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// URL clients reach this server at (used in clone URLs).
    #[arg(long, env = "COVE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Largest push accepted, in bytes (default 2 GiB).
    #[arg(long, env = "COVE_MAX_PUSH_BYTES")]
    max_push_bytes: Option<u64>,
    /// A second listener serving /metrics, /healthz and /readyz WITHOUT credentials, HOST:PORT
    /// (off by default; bind it to a private address).
    #[arg(long, env = "COVE_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Log format.
    #[arg(long, env = "COVE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }

    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    // Secrets come from the environment only, never from argv.
    let admin_token = std::env::var("COVE_ADMIN_TOKEN").ok();
    let flags = FileConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        database_url: args.database_url,
        public_url: args.public_url,
        max_push_bytes: args.max_push_bytes,
        metrics_listen: args.metrics_listen,
        ..FileConfig::default()
    };
    let config = Config::resolve(flags, admin_token, file)?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        database = %redact_url(&config.database_url()),
        "starting cove-server"
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let server = Server::new(config).await?;
    if let Some(token) = &server.bootstrap_token {
        // Shown exactly once, on stdout, never in the log.
        let mut out = std::io::stdout().lock();
        writeln!(out, "admin token (shown once, store it now): {token}")?;
        out.flush()?;
    }
    server.serve(listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
}
