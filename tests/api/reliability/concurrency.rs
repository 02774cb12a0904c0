//! Many imports of the same new image into one repository at once. Each finds the
//! blobs missing and uploads them; meanwhile others PUT their tags, and the
//! registry (distribution 2.8, filesystem storage) sometimes answers such a tag
//! PUT with 400 DIGEST_INVALID. Every import must still succeed.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{images, spawn_app};

const ROUNDS: usize = 3;
const IMPORTS: usize = 16;

#[tokio::test]
async fn concurrent_imports_of_the_same_new_blobs_into_one_repository_all_succeed() {
    let app = spawn_app(8).await;
    app.create_target().await;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        // A new image each round, so that every import finds its blobs missing.
        let image = images::image("amd64", 2, 256 * 1024);
        let source = format!("app:r{round}");
        images::push(
            &app.source_registry(),
            "app",
            &image,
            Some(&format!("r{round}")),
        )
        .await;
        let imports = (0..IMPORTS).map(|i| {
            app.run_import(json!({
                "source": { "registryUri": app.source.host, "sourceImage": source },
                "targetTags": [format!("app:r{round}-{i}")],
                "copyReferrers": false,
            }))
        });
        for (status, body) in join_all(imports).await {
            if status != 200 {
                failures.push(body);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} imports failed: {failures:#?}",
        failures.len(),
        ROUNDS * IMPORTS
    );
}
