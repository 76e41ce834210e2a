//! Stop and restart on the real engine (issue 19): stop runs preStop first and then ends
//! containers at once — processes the devfile chose run under Docker's init, which hands
//! them SIGTERM instead of leaving them deaf as PID 1 until the stop timeout; restart
//! recreates only the components whose containers differ from the new plan, keeping the
//! infra container (network namespace) and the others (ids, processes, in-memory data).

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use cove_agent::environment;
use cove_agent::pod::Change;
use cove_agent::{PodSpec, Runtime};
use devfiles::{LoadOptions, NoParents, PlanOptions};

fn plan(yaml: &str) -> devfiles::EnvironmentPlan {
    devfiles::load_str("test.yaml", yaml, &NoParents, &LoadOptions::default())
        .unwrap_or_else(|r| panic!("{r}"))
        .plan(&PlanOptions {
            repo: Some("repo".into()),
        })
        .0
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n:x}", std::process::id())
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker inspect -f FORMAT` of a container by name.
fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name])
}

async fn runtime() -> Runtime {
    Runtime::connect().await.expect(
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST",
    )
}

/// Removes the environment even when the test fails.
struct Cleanup(Runtime, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (rt, env) = (self.0.clone(), self.1.clone());
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move { rt.delete(&env).await.ok() });
        })
        .join()
        .ok();
    }
}

/// `main` gets the keep-alive (commands run in it); `worker` runs a devfile command that
/// installs no signal handler (busybox `sleep`): as PID 1 it would ignore SIGTERM and sit
/// out Docker's 5 s stop timeout.
const STOPPING: &str = r#"
schemaVersion: 2.2.0
components:
  - name: main
    container: {image: cove/busybox:latest}
  - name: worker
    container:
      image: cove/busybox:latest
      mountSources: false
      command: ["sleep"]
      args: ["3600"]
commands:
  - id: save
    exec: {component: main, commandLine: "sleep 0.3; echo saved > /projects/prestop.txt"}
events:
  preStop: [save]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_runs_pre_stop_then_ends_containers_at_once() {
    let rt = runtime().await;
    let env = unique("t-stop");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    let spec = PodSpec::new(&env, plan(STOPPING));
    rt.create(&spec).await.unwrap();
    // the devfile chose both processes: both run under Docker's init
    for c in ["main", "worker"] {
        assert_eq!(
            inspect(&format!("cove-{env}-{c}"), "{{.HostConfig.Init}}"),
            "true",
            "{c}"
        );
    }

    let t0 = Instant::now();
    let runs = environment::stop(&rt, &env, &spec.plan).await.unwrap();
    let took = t0.elapsed();
    // preStop ran (in a running container, before the stop) and succeeded
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].exit_code, 0, "{runs:?}");
    let status = rt.status(&env).await.unwrap().unwrap();
    assert!(!status.infra_running && status.containers.iter().all(|c| !c.running));
    // Correctness bound, not a speed test: the signal was handled. A process deaf to
    // SIGTERM makes Docker wait its whole 5 s timeout before SIGKILL.
    assert!(
        took < Duration::from_secs(4),
        "stop took {took:?}: a container sat out the stop timeout"
    );
    // the keep-alive's trap exits 0; `sleep` dies of the forwarded SIGTERM (128 + 15);
    // neither needed Docker's SIGKILL (137)
    assert_eq!(
        inspect(&format!("cove-{env}-main"), "{{.State.ExitCode}}"),
        "0"
    );
    assert_eq!(
        inspect(&format!("cove-{env}-worker"), "{{.State.ExitCode}}"),
        "143"
    );

    // what preStop wrote (the exec worked, so the container still ran) is in the volume
    rt.start(&env).await.unwrap();
    let out = rt
        .exec(&env, "main", &["cat", "/projects/prestop.txt"], &[], None)
        .await
        .unwrap();
    assert_eq!(out.stdout, "saved\n", "{out:?}");
}

/// An app with the keep-alive and an in-memory DynamoDB (dynalite without `--path`), as in
/// devfiles/examples/app-with-dynamodb.yaml.
fn app_with_dynamodb(value: &str, endpoint: bool) -> String {
    let endpoints = if endpoint {
        "\n      endpoints: [{name: http, targetPort: 8080}]"
    } else {
        ""
    };
    format!(
        r#"
schemaVersion: 2.2.0
components:
  - name: app
    container:
      image: cove/universal:latest
      env: [{{name: FLAVOUR, value: {value}}}]{endpoints}
  - name: dynamodb
    container:
      image: cove/dynamodb-local:latest
      mountSources: false
      command: ["dynalite"]
      args: ["--port", "8000", "--createTableMs", "0"]
  - name: web
    attributes: {{cove/entrypoint: image}}
    container: {{image: cove/echo-server:latest, mountSources: false}}
"#
    )
}

const DYNAMO: &str = r#"
import boto3, sys, time
db = boto3.client('dynamodb', endpoint_url='http://localhost:8000', region_name='us-east-1',
                  aws_access_key_id='x', aws_secret_access_key='x')
for _ in range(100):
    try:
        db.list_tables()
        break
    except Exception:
        time.sleep(0.1)
if sys.argv[1] == 'create':
    db.create_table(TableName='kept', BillingMode='PAY_PER_REQUEST',
                    KeySchema=[{'AttributeName': 'k', 'KeyType': 'HASH'}],
                    AttributeDefinitions=[{'AttributeName': 'k', 'AttributeType': 'S'}])
print(' '.join(db.list_tables()['TableNames']))
"#;

async fn tables(rt: &Runtime, env: &str, what: &str) -> String {
    let out = rt
        .exec(env, "app", &["python3", "-c", DYNAMO, what], &[], None)
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

fn id_of(env: &str, container: &str) -> String {
    inspect(&format!("cove-{env}-{container}"), "{{.Id}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recreates_only_the_changed_component() {
    let rt = runtime().await;
    let env = unique("t-rst");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    let spec = PodSpec::new(&env, plan(&app_with_dynamodb("plain", false)));
    rt.create(&spec).await.unwrap();
    // the image's own entrypoint runs as the image intends: no init
    assert_eq!(
        inspect(&format!("cove-{env}-web"), "{{.HostConfig.Init}}"),
        "<nil>"
    );
    assert_eq!(tables(&rt, &env, "create").await, "kept");
    rt.exec(
        &env,
        "app",
        &["sh", "-c", "echo data > /projects/kept.txt"],
        &[],
        None,
    )
    .await
    .unwrap();
    let before = |c: &str| id_of(&env, c);
    let (infra0, app0, db0, web0) = (
        before("-infra"),
        before("app"),
        before("dynamodb"),
        before("web"),
    );

    // one env var of the app changes: only the app is recreated
    let changed = PodSpec::new(&env, plan(&app_with_dynamodb("spicy", false)));
    let (status, done) = environment::restart_planned(&rt, &spec.plan, &changed)
        .await
        .unwrap();
    assert!(status.running());
    assert_eq!(done.full, None);
    assert_eq!(
        done.summary(),
        "recreated app (env); kept dynamodb, web",
        "{done:?}"
    );
    assert_eq!(id_of(&env, "-infra"), infra0, "network namespace kept");
    assert_eq!(id_of(&env, "dynamodb"), db0, "sidecar kept");
    assert_eq!(id_of(&env, "web"), web0, "sidecar kept");
    assert_ne!(id_of(&env, "app"), app0, "app recreated");
    let flavour = rt
        .exec(&env, "app", &["sh", "-c", "echo $FLAVOUR"], &[], None)
        .await
        .unwrap();
    assert_eq!(flavour.stdout, "spicy\n");
    // the sidecar's in-memory table survived, and the app reaches it over localhost
    assert_eq!(tables(&rt, &env, "list").await, "kept");

    // the same plan again: nothing to do, nothing touched
    let app1 = id_of(&env, "app");
    let (_, done) = environment::restart_planned(&rt, &changed.plan, &changed)
        .await
        .unwrap();
    assert!(!done.changes_anything(), "{done:?}");
    assert_eq!(
        (id_of(&env, "app"), id_of(&env, "dynamodb")),
        (app1.clone(), db0.clone())
    );

    // a published endpoint belongs to the infra container: everything is recreated
    let published = PodSpec::new(&env, plan(&app_with_dynamodb("spicy", true)));
    let (status, done) = environment::restart_planned(&rt, &changed.plan, &published)
        .await
        .unwrap();
    assert!(done.full.is_some(), "{done:?}");
    assert!(status.running());
    assert_eq!(status.endpoints.len(), 1, "{status:?}");
    assert_ne!(id_of(&env, "-infra"), infra0);
    assert_ne!(id_of(&env, "dynamodb"), db0);
    assert_eq!(
        tables(&rt, &env, "list").await,
        "",
        "a new dynalite is empty"
    );

    // a component that cannot be made: the restart fails, the containers are removed and
    // the data is kept; the next good restart brings everything back
    let broken = PodSpec::new(
        &env,
        plan(
            &app_with_dynamodb("spicy", true)
                .replace("cove/echo-server:latest", "cove/does-not-exist:latest"),
        ),
    );
    let plan_broken = rt.restart_plan(&broken).await.unwrap();
    assert_eq!(
        plan_broken
            .components
            .iter()
            .map(|c| (c.component.as_str(), c.change))
            .collect::<Vec<_>>(),
        [
            ("app", Change::Keep),
            ("dynamodb", Change::Keep),
            ("web", Change::Recreate)
        ]
    );
    environment::restart(&rt, &published.plan, &broken)
        .await
        .unwrap_err();
    let status = rt.status(&env).await.unwrap();
    assert!(status.is_none(), "containers left: {status:?}");
    environment::restart(&rt, &broken.plan, &published)
        .await
        .unwrap();
    let out = rt
        .exec(&env, "app", &["cat", "/projects/kept.txt"], &[], None)
        .await
        .unwrap();
    assert_eq!(out.stdout, "data\n");
}
