//! Dotfiles (issue 18): a user's "dotfiles repository" setting — an http(s) git URL or a Cove
//! repository `owner/name` — and what a new environment's create sends the agent for it
//! ([`EnvDotfiles`]). The agent clones it on its own side into `~/.dotfiles` of the first
//! source container and runs the first install script it finds (`agent/src/dotfiles.rs`).
//!
//! An external URL passes the SSRF guard of mirrors and notifications (`notify::ssrf`, the
//! `[mirrors] allow_private` list) when the environment is created, and the address it
//! resolved to is pinned for git. A Cove repository must be readable by the user and is
//! cloned with the environment's short-lived, read-only clone credential.

pub mod http;

use cove_api::agent::EnvDotfiles;
use cove_api::Scope;

use crate::auth::{self, Principal};
use crate::AppState;
use cove_api::Role;

/// Longest accepted setting.
const MAX_LEN: usize = 2048;

/// Where a user's dotfiles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dotfiles {
    /// An http(s) git URL outside Cove.
    Url(String),
    /// A Cove repository.
    Repo { owner: String, name: String },
}

/// Parses the setting: an http(s) URL without credentials, or `owner/name`.
pub fn parse(text: &str) -> Result<Dotfiles, String> {
    let text = text.trim();
    if text.len() > MAX_LEN {
        return Err(format!(
            "the dotfiles repository is longer than {MAX_LEN} characters"
        ));
    }
    if text.contains("://") {
        let url = crate::notify::ssrf::parse_url(text)?;
        return Ok(Dotfiles::Url(url.to_string()));
    }
    match text.split_once('/') {
        Some((owner, name))
            if !name.contains('/')
                && crate::names::validate_name("owner", owner).is_ok()
                && crate::names::validate_name(
                    "repository name",
                    name.trim_end_matches(".git"),
                )
                .is_ok() =>
        {
            Ok(Dotfiles::Repo {
                owner: owner.to_string(),
                name: name.trim_end_matches(".git").to_string(),
            })
        }
        _ => Err(format!(
            "{text:?} is neither an http(s) git URL nor a Cove repository owner/name"
        )),
    }
}

/// Checks that `principal` may read the Cove repository the setting names.
pub async fn check_readable(
    state: &AppState,
    principal: &Principal,
    dotfiles: &Dotfiles,
) -> Result<(), String> {
    if let Dotfiles::Repo { owner, name } = dotfiles {
        auth::authorize_repo(
            state.store(),
            Some(principal),
            owner,
            name,
            Scope::Read,
            Role::Reader,
        )
        .await
        .map_err(|_| format!("repository {owner}/{name} does not exist or you cannot read it"))?;
    }
    Ok(())
}

/// What to send the agent for `principal`'s dotfiles on create: `Ok(None)` when none are set;
/// `Err` says why they cannot be used (reported as the environment's warning, never an
/// error of the create). `auth_header` is the environment's short-lived clone credential.
pub async fn for_create(
    state: &AppState,
    principal: &Principal,
    auth_header: &str,
) -> Result<Option<EnvDotfiles>, String> {
    let Some(text) = state
        .store()
        .user_dotfiles(principal.user.id)
        .await
        .map_err(|e| format!("reading the dotfiles setting: {e}"))?
    else {
        return Ok(None);
    };
    let dotfiles = parse(&text)?;
    check_readable(state, principal, &dotfiles).await?;
    Ok(Some(match dotfiles {
        Dotfiles::Repo { owner, name } => EnvDotfiles {
            clone_url: format!("{}/git/{owner}/{name}.git", state.public_url()),
            auth_header: Some(auth_header.to_string()),
            resolve: None,
        },
        Dotfiles::Url(url) => {
            let allow = state.mirrors().settings().allow_private.clone();
            let destination = crate::notify::ssrf::check(&url, &allow)
                .await
                .map_err(|e| e.replace("[notify] allow_private", "[mirrors] allow_private"))?;
            EnvDotfiles {
                clone_url: url,
                auth_header: None,
                resolve: Some(crate::forge::mirror::fetch::resolve_entry(&destination)),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_urls_or_repositories() {
        assert_eq!(
            parse("alice/dots").unwrap(),
            Dotfiles::Repo {
                owner: "alice".into(),
                name: "dots".into()
            }
        );
        assert_eq!(
            parse(" https://example.com/a/dots.git ").unwrap(),
            Dotfiles::Url("https://example.com/a/dots.git".into())
        );
        for bad in [
            "",
            "dots",
            "a/b/c",
            "ssh://git@example.com/a.git",
            "file:///etc",
            "https://u:p@example.com/a.git",
            "-x/y",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
