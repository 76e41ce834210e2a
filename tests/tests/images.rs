//! The images `images/build.sh` builds exist and carry the project label.

use cove_tests::{docker_ok, require_docker, ALL_IMAGES};

#[test]
fn all_cove_images_exist_and_are_labelled() {
    require_docker();
    let mut missing = Vec::new();
    for tag in ALL_IMAGES {
        match docker_ok([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"org.opencontainers.image.source\"}}",
            tag,
        ]) {
            Ok(source) => assert_eq!(source, "cove", "label of {tag}"),
            Err(_) => missing.push(tag),
        }
    }
    assert!(
        missing.is_empty(),
        "missing images {missing:?}: run `bash scripts/test-env.sh` (or `images/build.sh`)"
    );
}

#[test]
fn busybox_image_runs_a_command() {
    cove_tests::require_image(cove_tests::IMAGE_BUSYBOX);
    let out = cove_tests::Container::run_once(
        "busybox",
        &["--rm", cove_tests::IMAGE_BUSYBOX, "echo", "hello"],
        cove_tests::DEFAULT_TIMEOUT,
    )
    .expect("docker run cove/busybox");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
}
