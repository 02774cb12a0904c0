//! openapi.yaml and the code agree: every error code the service can return is
//! enumerated there, and every route it serves is described.

use ferry::{api::error::ALL_CODES, operations::FailureCode};

fn spec() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap()
}

#[test]
fn every_error_code_is_in_openapi() {
    let spec = spec();
    let enum_block = spec
        .split("ErrorCode:")
        .nth(1)
        .expect("components.schemas.ErrorCode");
    for code in ALL_CODES
        .iter()
        .copied()
        .chain(FailureCode::ALL.iter().map(|c| c.as_str()))
    {
        assert!(
            enum_block.contains(&format!("- {code}\n")),
            "{code} missing from openapi.yaml ErrorCode"
        );
    }
}

#[test]
fn every_route_is_in_openapi() {
    let spec = spec();
    for route in [
        "/healthz:",
        "/readyz:",
        "/subscriptions:",
        "/subscriptions/{subscriptionId}:",
        "/subscriptions/{subscriptionId}/resources:",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}:",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries:",
        "/subscriptions/{subscriptionId}/providers/Microsoft.ContainerRegistry/registries:",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}/importImage:",
        "/subscriptions/{subscriptionId}/providers/Microsoft.ContainerRegistry/locations/{location}/operationResults/{operationId}:",
        "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}:",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Authorization/roleAssignments:",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}:",
        "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleDefinitions:",
        "/subscriptions/{subscriptionId}/providers/Microsoft.Insights/eventtypes/management/values:",
    ] {
        assert!(spec.contains(route), "{route} missing from openapi.yaml");
    }
}
