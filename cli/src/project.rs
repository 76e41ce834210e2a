//! `cove project …`: projects and their members — create, list, show, set (description,
//! estimate kind), repos add|remove, members add (an invitation) | remove | list | role,
//! invitations accept, leave, board.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use cove_api::{
    AttachRepo, CreateProject, EstimateKind, InviteMember, Project, ProjectBoard, ProjectMember,
    ProjectRole, SetMemberRole, UpdateProject,
};

use crate::client::Client;
use crate::repo::Output;

/// Projects: repositories grouped with members and roles.
#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(subcommand)]
    command: ProjectCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Administrator,
    Contributor,
    Reviewer,
    Reader,
}

impl From<RoleArg> for ProjectRole {
    fn from(r: RoleArg) -> ProjectRole {
        match r {
            RoleArg::Administrator => ProjectRole::Administrator,
            RoleArg::Contributor => ProjectRole::Contributor,
            RoleArg::Reviewer => ProjectRole::Reviewer,
            RoleArg::Reader => ProjectRole::Reader,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EstimateArg {
    Sizes,
    Points,
}

impl From<EstimateArg> for EstimateKind {
    fn from(e: EstimateArg) -> EstimateKind {
        match e {
            EstimateArg::Sizes => EstimateKind::Sizes,
            EstimateArg::Points => EstimateKind::Points,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project; you become its administrator.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// How issues are estimated: sizes (XS–XL) or points (0, 1, 2, 3, 5, 8, 13, 21).
        #[arg(long, value_enum)]
        estimates: Option<EstimateArg>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Your projects and pending invitations.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// A project: repositories, your role, members.
    Show {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Change the description or the estimate kind (administrators).
    Set {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_enum)]
        estimates: Option<EstimateArg>,
    },
    /// The project's repositories.
    #[command(subcommand)]
    Repos(ReposCommand),
    /// The project's members.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Your invitations.
    #[command(subcommand)]
    Invitations(InvitationsCommand),
    /// Leave a project (or decline its invitation).
    Leave { name: String },
    /// The boards of the project's repositories, merged by column.
    Board {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReposCommand {
    /// Attach a repository you own (OWNER/NAME).
    Add { project: String, repo: String },
    /// Take a repository out of the project.
    Remove { project: String, repo: String },
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Invite a user with a role; they become a member when they accept.
    Add {
        project: String,
        user: String,
        #[arg(long, value_enum, default_value = "contributor")]
        role: RoleArg,
    },
    /// Remove a member or withdraw an invitation.
    Remove { project: String, user: String },
    /// Change a member's role.
    Role {
        project: String,
        user: String,
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Members, then pending invitations.
    List {
        project: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum InvitationsCommand {
    /// Accept your invitation to a project.
    Accept { project: String },
}

fn print_project(p: &Project) {
    println!("project     {}", p.name);
    if !p.description.is_empty() {
        println!("description {}", p.description);
    }
    println!("estimates   {}", p.estimate_kind.as_str());
    match (p.role, p.invited_as) {
        (Some(role), _) => println!("your role   {}", role.as_str()),
        (None, Some(role)) => println!(
            "invited as  {} (accept: cove project invitations accept {})",
            role.as_str(),
            p.name
        ),
        (None, None) => {}
    }
    for repo in &p.repos {
        println!("repository  {repo}");
    }
}

fn print_members(members: &[ProjectMember]) {
    for m in members {
        println!(
            "{:<20} {:<13}{}",
            m.user,
            m.role.as_str(),
            if m.pending { " (invited)" } else { "" }
        );
    }
}

fn json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn run(args: ProjectArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    match args.command {
        ProjectCommand::Create {
            name,
            description,
            estimates,
            output,
        } => {
            let p: Project = client.post(
                "/projects",
                &CreateProject {
                    name,
                    description,
                    estimate_kind: estimates.map(EstimateKind::from),
                },
            )?;
            match output {
                Output::Json => json(&p)?,
                Output::Text => println!("created project {}", p.name),
            }
        }
        ProjectCommand::List { output } => {
            let projects: Vec<Project> = client.get("/projects")?;
            match output {
                Output::Json => json(&projects)?,
                Output::Text => {
                    for p in &projects {
                        let role = match (p.role, p.invited_as) {
                            (Some(r), _) => r.as_str().to_string(),
                            (None, Some(r)) => format!("invited as {}", r.as_str()),
                            (None, None) => "-".to_string(),
                        };
                        println!("{:<24} {:<24} {}", p.name, role, p.repos.join(","));
                    }
                }
            }
        }
        ProjectCommand::Show { name, output } => {
            let p: Project = client.get(&format!("/projects/{name}"))?;
            let members: Vec<ProjectMember> = client.get(&format!("/projects/{name}/members"))?;
            match output {
                Output::Json => json(&serde_json::json!({"project": p, "members": members}))?,
                Output::Text => {
                    print_project(&p);
                    println!();
                    print_members(&members);
                }
            }
        }
        ProjectCommand::Set {
            name,
            description,
            estimates,
        } => {
            let p: Project = client.patch(
                &format!("/projects/{name}"),
                &UpdateProject {
                    description,
                    estimate_kind: estimates.map(EstimateKind::from),
                },
            )?;
            print_project(&p);
        }
        ProjectCommand::Repos(ReposCommand::Add { project, repo }) => {
            let _: Project = client.post(
                &format!("/projects/{project}/repos"),
                &AttachRepo { repo: repo.clone() },
            )?;
            println!("{repo} is in project {project}");
        }
        ProjectCommand::Repos(ReposCommand::Remove { project, repo }) => {
            client.delete(&format!("/projects/{project}/repos/{repo}"))?;
            println!("{repo} is no longer in project {project}");
        }
        ProjectCommand::Members(MembersCommand::Add {
            project,
            user,
            role,
        }) => {
            let m: ProjectMember = client.post(
                &format!("/projects/{project}/members"),
                &InviteMember {
                    user,
                    role: role.into(),
                },
            )?;
            println!(
                "invited {} as {}; they accept with: cove project invitations accept {project}",
                m.user,
                m.role.as_str()
            );
        }
        ProjectCommand::Members(MembersCommand::Remove { project, user }) => {
            client.delete(&format!("/projects/{project}/members/{user}"))?;
            println!("removed {user} from project {project}");
        }
        ProjectCommand::Members(MembersCommand::Role {
            project,
            user,
            role,
        }) => {
            let m: ProjectMember = client.put(
                &format!("/projects/{project}/members/{user}"),
                &SetMemberRole { role: role.into() },
            )?;
            println!("{} is now {} in project {project}", m.user, m.role.as_str());
        }
        ProjectCommand::Members(MembersCommand::List { project, output }) => {
            let members: Vec<ProjectMember> =
                client.get(&format!("/projects/{project}/members"))?;
            match output {
                Output::Json => json(&members)?,
                Output::Text => print_members(&members),
            }
        }
        ProjectCommand::Invitations(InvitationsCommand::Accept { project }) => {
            let p: Project = client.post(
                &format!("/projects/{project}/invitations/accept"),
                &serde_json::json!({}),
            )?;
            println!(
                "you are now {} in project {}",
                p.role.map_or("a member", ProjectRole::as_str),
                p.name
            );
        }
        ProjectCommand::Leave { name } => {
            let me: cove_api::User = client.get("/user")?;
            client.delete(&format!("/projects/{name}/members/{}", me.username))?;
            println!("you left project {name}");
        }
        ProjectCommand::Board { name, output } => {
            let board: ProjectBoard = client.get(&format!("/projects/{name}/board"))?;
            match output {
                Output::Json => json(&board)?,
                Output::Text => {
                    for column in &board.columns {
                        println!("== {} ({})", column.name, column.count);
                        for i in &column.issues {
                            println!("  {}#{:<5} {}", i.repo, i.number, i.title);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
