//! The progress an import reports in its poll body: totals that add up when it
//! ends, what a re-import skips, and what a copy within one registry mounts.

use serde_json::{Value, json};

use crate::helpers::{images, spawn_app};

fn counter(body: &Value, name: &str) -> u64 {
    body["properties"]["progress"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

#[tokio::test]
async fn progress_counts_copies_skips_and_mounts() {
    let app = spawn_app(2).await;
    app.create_target().await;
    let image = images::image("amd64", 3, 40_000);
    images::push(&app.source_registry(), "app", &image, Some("v1")).await;
    let bytes: u64 = image.blobs.iter().map(|(_, b)| b.len() as u64).sum();
    let import = |mode: &str, source: &str, target: &str| {
        json!({
            "source": { "registryUri": source, "sourceImage": "app:v1" },
            "targetTags": [target],
            "mode": mode,
        })
    };

    // A cold copy: everything copied, nothing skipped or mounted.
    let (status, cold) = app
        .run_import(import("NoForce", &app.source.host, "app:v1"))
        .await;
    assert_eq!(status, 200, "{cold}");
    assert_eq!(counter(&cold, "manifestsTotal"), 1);
    assert_eq!(counter(&cold, "manifestsDone"), 1);
    assert_eq!(counter(&cold, "blobsTotal"), 4);
    assert_eq!(counter(&cold, "blobsDone"), 4);
    assert_eq!(counter(&cold, "blobsSkipped"), 0);
    assert_eq!(counter(&cold, "blobsMounted"), 0);
    assert_eq!(counter(&cold, "bytesTotal"), bytes);
    assert_eq!(
        counter(&cold, "bytesDone"),
        bytes,
        "streamed bytes counted once"
    );

    // The same image again: the manifest is present, so all of it is skipped.
    let (status, again) = app
        .run_import(import("Force", &app.source.host, "app:v1"))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(counter(&again, "manifestsSkipped"), 1);
    assert_eq!(counter(&again, "blobsSkipped"), 4);
    assert_eq!(counter(&again, "bytesDone"), bytes);

    // From the target into another of its repositories: every blob mounted.
    let (status, mounted) = app
        .run_import(json!({
            "source": { "registryUri": app.target.host, "sourceImage": "app:v1" },
            "targetTags": ["copies/app:v1"],
        }))
        .await;
    assert_eq!(status, 200, "{mounted}");
    assert_eq!(counter(&mounted, "blobsMounted"), 4);
    assert_eq!(counter(&mounted, "blobsDone"), 4);
}
