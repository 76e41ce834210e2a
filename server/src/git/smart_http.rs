//! The smart HTTP protocol: `info/refs`, `git-upload-pack` and
//! `git-receive-pack`, served by spawning `git … --stateless-rpc` with
//! streamed bodies; a push is acknowledged only after its events are stored.

use super::*;

/// The two services of the smart protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    fn from_name(name: &str) -> Option<Service> {
        match name {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }
    fn subcommand(self) -> &'static str {
        &self.name()[4..]
    }
    fn scope_and_role(self) -> (Scope, Role) {
        match self {
            Service::UploadPack => (Scope::Read, Role::Reader),
            Service::ReceivePack => (Scope::Write, Role::Writer),
        }
    }
}

/// `Git-Protocol` header value, if present and made of harmless characters.
fn git_protocol(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("git-protocol")?.to_str().ok()?;
    let ok = value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b':' | b'.' | b'_' | b'-'));
    ok.then(|| value.to_string())
}

/// Adds `WWW-Authenticate: Basic` to a git route's 401, so git asks for credentials. (The
/// API never sends it: a browser must not cache Basic credentials for the API.)
pub async fn ask_for_basic(mut response: Response) -> Response {
    if response.status() == axum::http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"cove\""),
        );
    }
    response
}

async fn authorize_git(
    state: &AppState,
    client: std::net::IpAddr,
    headers: &HeaderMap,
    owner: &str,
    repo_segment: &str,
    service: Service,
) -> Result<(RepoRow, Option<Principal>), ApiError> {
    let name = repo_segment
        .strip_suffix(".git")
        .ok_or_else(|| ApiError::NotFound(format!("repository {owner}/{repo_segment}")))?;
    let principal = authenticate(state, client, headers).await?;
    crate::audit::note_principal(principal.as_ref());
    crate::audit::note_repo(owner, name);
    let (scope, role) = service.scope_and_role();
    let repo = authorize_repo(state.store(), principal.as_ref(), owner, name, scope, role).await?;
    crate::audit::authorized();
    Ok((repo, principal))
}

/// Query of `GET info/refs`.
#[derive(Debug, Deserialize)]
pub struct InfoRefsQuery {
    service: Option<String>,
}

fn pkt_line(data: &str) -> String {
    format!("{:04x}{data}", data.len() + 4)
}

/// `GET /git/{owner}/{repo}.git/info/refs?service=…`: the ref advertisement.
pub async fn info_refs(
    State(state): State<AppState>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    Query(query): Query<InfoRefsQuery>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let service = query
        .service
        .as_deref()
        .and_then(Service::from_name)
        .ok_or_else(|| {
            ApiError::Forbidden(
                "only the smart HTTP protocol is supported; use git 1.6.6 or newer".into(),
            )
        })?;
    let (row, _) = authorize_git(&state, client, &headers, &owner, &repo, service).await?;
    let path = repo_path(state.data_dir(), &row.owner, &row.name);
    let protocol = git_protocol(&headers);
    let mut cmd = git();
    cmd.arg(service.subcommand())
        .arg("--stateless-rpc")
        .arg("--advertise-refs")
        .arg(&path)
        .stdin(Stdio::null());
    if let Some(protocol) = &protocol {
        cmd.env("GIT_PROTOCOL", protocol);
    }
    let output = cmd.output().await.map_err(ApiError::internal)?;
    if !output.status.success() {
        return Err(ApiError::internal(GitError::Command {
            command: format!("{} --advertise-refs", service.subcommand()),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }));
    }
    let v2 = service == Service::UploadPack
        && protocol
            .as_deref()
            .is_some_and(|p| p.split(':').any(|kv| kv == "version=2"));
    let mut body = Vec::with_capacity(output.stdout.len() + 64);
    if !v2 {
        body.extend_from_slice(pkt_line(&format!("# service={}\n", service.name())).as_bytes());
        body.extend_from_slice(b"0000");
    }
    body.extend_from_slice(&output.stdout);
    Ok(git_response(
        &format!("application/x-{}-advertisement", service.name()),
        Body::from(body),
    ))
}

fn git_response(content_type: &str, body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

type BoxReader = Pin<Box<dyn AsyncRead + Send>>;

/// The request body as a stream of bytes, gunzipped when the client compressed it.
fn body_reader(headers: &HeaderMap, body: Body) -> Result<BoxReader, ApiError> {
    let stream = body.into_data_stream().map_err(io::Error::other);
    let reader = StreamReader::new(stream);
    match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        None | Some("identity") => Ok(Box::pin(reader)),
        Some("gzip") | Some("x-gzip") => Ok(Box::pin(GzipDecoder::new(reader))),
        Some(other) => Err(ApiError::BadRequest(format!(
            "unsupported content-encoding {other:?}"
        ))),
    }
}

fn spawn_service(
    service: Service,
    path: &Path,
    protocol: Option<&str>,
    guard: Option<&crate::forge::rules_push::PushGuard>,
) -> Result<tokio::process::Child, ApiError> {
    let mut cmd = git();
    if let Some(guard) = guard {
        guard.configure(&mut cmd);
    }
    cmd.arg(service.subcommand())
        .arg("--stateless-rpc")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(protocol) = protocol {
        cmd.env("GIT_PROTOCOL", protocol);
    }
    cmd.spawn().map_err(ApiError::internal)
}

/// `POST /git/{owner}/{repo}.git/git-upload-pack`: fetch and clone, streamed both ways.
pub async fn upload_pack(
    State(state): State<AppState>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let client = crate::auth::client::of(&parts.extensions);
    let (row, _) = authorize_git(
        &state,
        client,
        &parts.headers,
        &owner,
        &repo,
        Service::UploadPack,
    )
    .await?;
    let path = repo_path(state.data_dir(), &row.owner, &row.name);
    let mut reader = body_reader(&parts.headers, body)?;
    let mut child = spawn_service(
        Service::UploadPack,
        &path,
        git_protocol(&parts.headers).as_deref(),
        None,
    )?;
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "git upload-pack without pipes"
        )));
    };
    tokio::spawn(async move {
        if let Err(error) = pump(&mut reader, &mut stdin, MAX_FETCH_REQUEST_BYTES).await {
            tracing::debug!(error = %error, "upload-pack request body ended early");
        }
        // Dropping stdin closes it, which ends the request for git.
    });
    let full_name = format!("{}/{}", row.owner, row.name);
    tokio::spawn(async move {
        let mut err = Vec::new();
        let _ = stderr.read_to_end(&mut err).await;
        match child.wait().await {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(
                repo = %full_name,
                status = %status,
                stderr = %String::from_utf8_lossy(&err),
                "git upload-pack failed"
            ),
            Err(error) => {
                tracing::warn!(repo = %full_name, error = %error, "waiting for git upload-pack")
            }
        }
    });
    Ok(git_response(
        "application/x-git-upload-pack-result",
        Body::from_stream(ReaderStream::new(stdout)),
    ))
}

/// Largest fetch negotiation request (wants and haves) accepted.
const MAX_FETCH_REQUEST_BYTES: u64 = 256 * 1024 * 1024;

/// How long a request body may stall before the transfer is abandoned.
const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Why copying a request body into git stopped.
#[derive(Debug, thiserror::Error)]
enum PumpError {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("request body stalled for {}s", BODY_IDLE_TIMEOUT.as_secs())]
    Idle,
    #[error("push did not finish within the server's deadline of {}s", .0.as_secs())]
    Deadline(std::time::Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Copies `reader` into `writer`, refusing more than `limit` bytes and bodies that stall for
/// [`BODY_IDLE_TIMEOUT`] (so a slow client cannot hold a repository's push lock forever).
async fn pump(
    reader: &mut BoxReader,
    writer: &mut tokio::process::ChildStdin,
    limit: u64,
) -> Result<u64, PumpError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = tokio::time::timeout(BODY_IDLE_TIMEOUT, reader.read(&mut buf))
            .await
            .map_err(|_| PumpError::Idle)??;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if total > limit {
            return Err(PumpError::TooLarge(limit));
        }
        writer.write_all(&buf[..n]).await?;
    }
}

/// Largest receive-pack status report kept in memory (it is a few lines per ref).
const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// `POST /git/{owner}/{repo}.git/git-receive-pack`: push. The request body is streamed into
/// git; the push runs in its own task so a client that disconnects cannot interrupt the
/// bookkeeping after git has updated refs.
pub async fn receive_pack(
    State(state): State<AppState>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let client = crate::auth::client::of(&parts.extensions);
    let (row, principal) = authorize_git(
        &state,
        client,
        &parts.headers,
        &owner,
        &repo,
        Service::ReceivePack,
    )
    .await?;
    let Some(pusher) = principal.map(|p| p.user) else {
        return Err(ApiError::Unauthorized);
    };
    let reader = body_reader(&parts.headers, body)?;
    let protocol = git_protocol(&parts.headers);
    let task_state = state.clone();
    let report = tokio::spawn(crate::audit::carry(async move {
        run_receive_pack(task_state, row, pusher, reader, protocol).await
    }))
    .await
    .map_err(ApiError::internal)??;
    Ok(git_response(
        "application/x-git-receive-pack-result",
        Body::from(report),
    ))
}

async fn run_receive_pack(
    state: AppState,
    repo: RepoRow,
    pusher: crate::store::UserRow,
    mut reader: BoxReader,
    protocol: Option<String>,
) -> Result<Vec<u8>, ApiError> {
    // Branch rules: the push's commands are read first (and replayed to git); refs the rules
    // refuse or allow only as fast-forwards are checked by Cove's update hook (forge/rules_push).
    let deadline = state.limits().push_deadline;
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(
        deadline,
        crate::forge::rules_push::read_commands(&mut reader),
    )
    .await;
    let commands = match read {
        Ok(Ok(commands)) => commands,
        failed => {
            use crate::forge::rules_push::CommandsError;
            let (result, error) = match failed {
                Err(_) => (
                    "deadline",
                    ApiError::Timeout(format!(
                        "push did not finish within the server's deadline of {} s",
                        deadline.as_secs()
                    )),
                ),
                Ok(Err(e @ CommandsError::TooLarge)) => {
                    ("refused", ApiError::TooLarge(e.to_string()))
                }
                Ok(Err(e @ CommandsError::Malformed(_))) => {
                    ("refused", ApiError::BadRequest(e.to_string()))
                }
                Ok(Err(CommandsError::Io(_))) | Ok(Ok(_)) => (
                    "refused",
                    ApiError::BadRequest("push request body ended early".into()),
                ),
            };
            state
                .metrics()
                .push_finished(None, started.elapsed(), result);
            crate::audit::push(&state, &repo, &pusher.username, &[], result).await;
            return Err(error);
        }
    };
    let rules = state.store().branch_rules(repo.id).await?;
    let pusher_is_owner = pusher.is_admin
        || pusher.id == repo.owner_id
        || (!rules.is_empty()
            && state.store().member_role(repo.id, pusher.id).await? == Some(Role::Owner));
    // A mirror takes no pushes from users: its refs follow the upstream (forge/mirror).
    let verdicts = match state.store().mirror(repo.id).await? {
        Some(mirror) => crate::forge::rules_push::Verdicts::mirror(&commands.commands, &mirror.url),
        None => crate::forge::rules_push::Verdicts::for_push(
            &rules,
            &commands.commands,
            pusher_is_owner,
        ),
    };
    let guard = if verdicts.is_empty() {
        None
    } else {
        Some(
            crate::forge::rules_push::PushGuard::prepare(state.data_dir(), verdicts).map_err(
                |e| {
                    tracing::error!(error = %e, "branch rules cannot be enforced: push refused");
                    ApiError::Unavailable(
                        "branch rules cannot be enforced on this server right now; ask an administrator"
                            .into(),
                    )
                },
            )?,
        )
    };
    let side_band = commands.side_band;
    let mut reader: BoxReader = Box::pin(io::Cursor::new(commands.raw).chain(reader));
    let _guard = crate::cluster::lock_repo(&state, repo.id).await?;
    let held = std::time::Instant::now();
    let path = repo_path(state.data_dir(), &repo.owner, &repo.name);
    let before = snapshot_refs(path.clone()).await?;
    let mut child = spawn_service(
        Service::ReceivePack,
        &path,
        protocol.as_deref(),
        guard.as_ref(),
    )?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "git receive-pack without pipes"
        )));
    };
    let limit = state.max_push_bytes();
    let feed = async move {
        let result = pump(&mut reader, &mut stdin, limit).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
        result
    };
    let mut report = Vec::new();
    let mut err = Vec::new();
    let mut stdout = stdout.take(MAX_REPORT_BYTES);
    let mut stderr = stderr.take(MAX_REPORT_BYTES);
    // The whole receive has a deadline (push_deadline_secs), so a client that trickles its
    // body cannot hold the repository's lock: past it git is killed and the lock released.
    let pumped = tokio::time::timeout(deadline, async {
        tokio::join!(
            feed,
            stdout.read_to_end(&mut report),
            stderr.read_to_end(&mut err),
        )
    })
    .await;
    let (fed, out) = match pumped {
        Ok((fed, out, _)) => (fed, out),
        Err(_) => {
            let _ = child.start_kill();
            (Err(PumpError::Deadline(deadline)), Ok(0))
        }
    };
    let status = child.wait().await.map_err(ApiError::internal)?;
    out.map_err(ApiError::internal)?;
    let full_name = format!("{}/{}", repo.owner, repo.name);
    if let Err(error) = &fed {
        tracing::info!(repo = %full_name, error = %error, "push request body ended early");
    }
    if !status.success() {
        tracing::warn!(
            repo = %full_name,
            status = %status,
            stderr = %String::from_utf8_lossy(&err),
            "git receive-pack failed"
        );
    }
    let after = snapshot_refs(path).await?;
    let updates = diff_refs(&before, &after);
    if !updates.is_empty() {
        let stored = state
            .store()
            .insert_push_events(&repo, Some(&pusher), &updates)
            .await?;
        // Open pull requests whose source branch moved get a new revision.
        crate::forge::after_push(&state, &repo, Some(&pusher.username), &stored).await;
        for event in stored {
            tracing::info!(
                repo = %full_name,
                r#ref = %event.ref_name,
                old = %event.old_sha,
                new = %event.new_sha,
                pusher = event.pusher.as_deref().unwrap_or_default(),
                "push event stored"
            );
            state.publish(crate::repos::push_event_dto(&full_name, event));
        }
    }
    let mut protected_refusal = false;
    if let Some(guard) = &guard {
        let (rewritten, refused) =
            crate::forge::rules_push::rewrite_report(&report, &guard.verdicts, side_band);
        report = rewritten;
        protected_refusal = refused;
    }
    let result = match &fed {
        Ok(_) if protected_refusal => "protected",
        Ok(_) if status.success() => "ok",
        Err(PumpError::Deadline(_)) => "deadline",
        _ => "refused",
    };
    state
        .metrics()
        .push_finished(fed.as_ref().ok().copied(), held.elapsed(), result);
    crate::audit::push(&state, &repo, &pusher.username, &updates, result).await;
    match fed {
        Err(PumpError::Deadline(d)) if updates.is_empty() => Err(ApiError::Timeout(format!(
            "push did not finish within the server's deadline of {} s",
            d.as_secs()
        ))),
        Err(PumpError::TooLarge(limit)) if updates.is_empty() => Err(ApiError::TooLarge(format!(
            "push larger than the server's limit of {limit} bytes"
        ))),
        Err(_) if updates.is_empty() => {
            Err(ApiError::BadRequest("push request body ended early".into()))
        }
        _ => Ok(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_other_protocol_headers_are_validated() {
        let mut headers = HeaderMap::new();
        headers.insert("git-protocol", HeaderValue::from_static("version=2"));
        assert_eq!(git_protocol(&headers).as_deref(), Some("version=2"));
        headers.insert("git-protocol", HeaderValue::from_static("version=2;rm -rf"));
        assert_eq!(git_protocol(&headers), None);
    }
}
