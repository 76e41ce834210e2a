//! cove/dynamodb-local answers real boto3 DynamoDB calls from a second container
//! that shares its network namespace (the way devfile components share a pod).

use std::time::Duration;

use cove_tests::{require_image, Container, IMAGE_DYNAMODB_LOCAL, IMAGE_UNIVERSAL};
use serde_json::{json, Value};

/// Runs inside cove/universal: waits for the server, creates a table, puts an item,
/// gets it back and prints `{"put": ..., "got": ...}` (DynamoDB wire format) as JSON.
const CLIENT: &str = r#"
import json, sys, time
import boto3
from botocore.exceptions import EndpointConnectionError

ddb = boto3.client("dynamodb", endpoint_url="http://localhost:8000", region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
deadline = time.time() + 30
while True:
    try:
        ddb.list_tables()
        break
    except EndpointConnectionError:
        if time.time() > deadline:
            sys.exit("dynalite did not answer on localhost:8000 within 30 s")
        time.sleep(0.1)

ddb.create_table(
    TableName="smoke",
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    BillingMode="PAY_PER_REQUEST",
)
ddb.get_waiter("table_exists").wait(TableName="smoke", WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
item = json.loads(sys.argv[1])
ddb.put_item(TableName="smoke", Item=item)
got = ddb.get_item(TableName="smoke", Key={"pk": item["pk"]}, ConsistentRead=True)
print(json.dumps({"put": item, "got": got.get("Item")}))
"#;

#[test]
fn dynamodb_local_create_put_get_roundtrip() {
    require_image(IMAGE_DYNAMODB_LOCAL);
    require_image(IMAGE_UNIVERSAL);

    let server =
        Container::start("dynamodb", &[IMAGE_DYNAMODB_LOCAL]).expect("start dynamodb-local");

    let item = json!({
        "pk": {"S": "env#42"},
        "owner": {"S": "alice"},
        "cpus": {"N": "2"},
        "tags": {"SS": ["rust", "ci"]},
        "ready": {"BOOL": true},
    });
    let network = format!("container:{}", server.id);
    let item_arg = item.to_string();
    let out = Container::run_once(
        "dynamodb-client",
        &[
            "--rm",
            "--network",
            &network,
            IMAGE_UNIVERSAL,
            "python3",
            "-c",
            CLIENT,
            &item_arg,
        ],
        Duration::from_secs(120),
    )
    .expect("run the boto3 client container");

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed ({}):\nstdout: {stdout}\nstderr: {}\nserver logs:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    let result: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client printed no JSON ({e}): {stdout}"));
    assert_eq!(result["put"], item, "client echoed a different item");
    let mut got = result["got"].clone();
    // A string set comes back in no particular order.
    if let Some(tags) = got["tags"]["SS"].as_array_mut() {
        tags.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    let mut want = item.clone();
    if let Some(tags) = want["tags"]["SS"].as_array_mut() {
        tags.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    assert_eq!(
        got, want,
        "get_item returned a different item than put_item stored"
    );
}
