//! `POST …/registries/{name}/importImage`: validate, authorize, enqueue in one short
//! transaction, answer 202 with the poll URL. The copy itself belongs to the worker,
//! so a client that disconnects cannot cancel it.

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};

use super::{
    AppState,
    error::ApiError,
    extract::{ApiVersion, ArmJson, BaseUrl, RegistryPath},
    operations::{accepted, poll_url},
    registries::load,
};
use crate::{
    access::{Caller, ScopePath},
    auth::{Action, Authorized, CanImport},
    egress,
    operations::{
        OperationId,
        quota::Limited,
        spec::{ImportImageBody, SourceLocator, SourceRegistry, SpecError},
        store::{self, Enqueued, NewOperation},
    },
    registries::{
        NetworkRuleBypassOptions, PolicyStatus, PublicNetworkAccess, Registry, RegistryKey,
    },
};

pub(super) fn router() -> Router<AppState> {
    Router::new().route(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}/importImage",
        post(import_image),
    )
}

impl From<SpecError> for ApiError {
    fn from(error: SpecError) -> Self {
        Self::InvalidParameters {
            target: error.target,
            message: error.message,
        }
    }
}

async fn import_image(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanImport>,
    RegistryPath(key): RegistryPath,
    ApiVersion(version): ApiVersion,
    BaseUrl(base): BaseUrl,
    headers: HeaderMap,
    ArmJson(body): ArmJson<ImportImageBody>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let target = load(&state, &caller, &key).await?;
    let request = body.validate()?;
    check_target_policy(&target)?;
    let source = match &request.locator {
        SourceLocator::Uri(host) => {
            // Closing only means something where ferry would be the bridge: a host it
            // reaches at an internal address. A public host stays open to everyone,
            // whoever declares a closed resource for it.
            if crate::registries::store::closed_to_public(&state.pool, host).await?
                && egress::reaches_internal(state.lookup.as_ref(), host).await
            {
                return Err(ApiError::invalid(
                    "source.registryUri",
                    format!(
                        "The source registry '{host}' has public network access disabled; import from it by source.resourceId within its own tenant."
                    ),
                ));
            }
            SourceRegistry::Uri { host: host.clone() }
        }
        SourceLocator::ResourceId(id) => resolve_source(&state, &caller, id).await?,
    };
    let id = OperationId::new();
    let (spec, credentials) = request.into_spec(source);
    let secret = credentials
        .map(|c| state.sealer.seal(&c.to_plaintext(), id.0.as_bytes()))
        .transpose()?;
    let location = normalized_location(&target.location);
    let enqueued = store::enqueue(
        &state.pool,
        NewOperation {
            id,
            tenant: caller.tenant,
            subscription: key.subscription,
            location: location.clone(),
            registry: target.id,
            spec,
            secret,
            created_by: caller.id.clone(),
            idempotency_key,
        },
        state.tenant_limits,
    )
    .await?;
    let (id, location) = match enqueued {
        Enqueued::New => {
            tracing::info!(op.id = %id, registry = %target.name, principal = %caller.id, "import queued");
            (id, location)
        }
        Enqueued::Repeat(original, location) => {
            tracing::info!(op.id = %original, principal = %caller.id, "repeated import request");
            (original, location)
        }
        Enqueued::Limited(Limited {
            message,
            retry_after,
        }) => {
            tracing::info!(
                tenant = %caller.tenant.0,
                principal = %caller.id,
                reason = %message,
                retry_after,
                "import refused: the tenant is over its limits"
            );
            return Err(ApiError::TooManyRequests {
                message,
                retry_after,
            });
        }
    };
    let url = poll_url(&base, key.subscription, &location, id, &version);
    accepted(StatusCode::ACCEPTED.into_response(), &url)
}

/// The headers a client marks a repeatable request with, most specific first.
const IDEMPOTENCY_HEADERS: [&str; 3] = [
    "repeatability-request-id",
    "idempotency-key",
    "x-ms-client-request-id",
];

/// The client's key for this submission: a retry with the same key by the same
/// principal within 24 hours gets the original operation instead of a second one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some((name, value)) = IDEMPOTENCY_HEADERS
        .iter()
        .find_map(|name| headers.get(*name).map(|value| (*name, value)))
    else {
        return Ok(None);
    };
    match value.to_str().map(str::trim) {
        Ok(key) if !key.is_empty() && key.len() <= 256 => Ok(Some(key.to_owned())),
        _ => Err(ApiError::invalid(
            name,
            format!("The {name} header must be 1 to 256 visible characters."),
        )),
    }
}

/// ACR's rule: a registry closed to public networks must let trusted services
/// through to receive an import.
fn check_target_policy(target: &Registry) -> Result<(), ApiError> {
    let props = &target.properties;
    if props.public_network_access == PublicNetworkAccess::Disabled
        && props.network_rule_bypass_options == NetworkRuleBypassOptions::None
    {
        return Err(ApiError::invalid(
            "networkRuleBypassOptions",
            format!(
                "The target registry '{}' has public network access disabled and networkRuleBypassOptions set to None; allow trusted services (AzureServices) to import into it.",
                target.name
            ),
        ));
    }
    Ok(())
}

/// ARM's normalised location: lowercase, no spaces ("West US" → "westus").
fn normalized_location(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Finds the registry a `resourceId` names, within the caller's tenant.
async fn resolve_source(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<SourceRegistry, ApiError> {
    let not_found = || ApiError::ResourceNotFound(id.to_owned());
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    let [subs, sub, groups, group, providers, namespace, kind, name] = segments[..] else {
        return Err(ApiError::invalid(
            "source.resourceId",
            "The resourceId is not a registry resource id.",
        ));
    };
    let keywords = [
        (subs, "subscriptions"),
        (groups, "resourceGroups"),
        (providers, "providers"),
        (namespace, "Microsoft.ContainerRegistry"),
        (kind, "registries"),
    ];
    if keywords
        .iter()
        .any(|(seen, want)| !seen.eq_ignore_ascii_case(want))
    {
        return Err(ApiError::invalid(
            "source.resourceId",
            "The resourceId is not a registry resource id.",
        ));
    }
    let subscription = uuid::Uuid::parse_str(sub).map_err(|_| not_found())?;
    let key = RegistryKey {
        subscription,
        group: group.to_owned(),
        name: name.to_owned(),
    };
    // Pulling from a registry of the tenant needs read access to it; checked before
    // the lookup, so a caller without it cannot tell which registries exist.
    caller.require(Action::Read, &ScopePath::registry(&key))?;
    let registry = crate::registries::store::find(&state.pool, caller.tenant, &key)
        .await?
        .ok_or_else(not_found)?;
    if registry.properties.policies.export_policy.status == PolicyStatus::Disabled {
        return Err(ApiError::invalid(
            "source.resourceId",
            format!(
                "The source registry '{}' has its export policy disabled, so images cannot be imported from it.",
                registry.name
            ),
        ));
    }
    Ok(SourceRegistry::Resource {
        registry_id: registry.id,
        login_server: registry.login_server,
    })
}
