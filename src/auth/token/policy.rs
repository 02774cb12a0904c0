//! What a correctly signed token must also say to be accepted (audience, issuer,
//! time window) and how its `roles` map to ferry's roles.

use std::collections::BTreeSet;

use jsonwebtoken::{Algorithm, Validation};

use crate::{auth::Role, config::RoleClaim};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY: u64 = 30;

/// The claim checks every key source shares.
#[derive(Debug, Clone, Default)]
pub(super) struct ClaimPolicy {
    /// Accepted `aud` values; empty: `aud` is not checked.
    pub(super) audiences: Vec<String>,
    /// Accepted `iss` values, `{tid}` / `{tenantid}` standing for the token's tenant.
    pub(super) issuers: Vec<String>,
    /// Role claim values configured on top of the defaults.
    pub(super) role_claims: Vec<RoleClaim>,
}

impl ClaimPolicy {
    /// jsonwebtoken's checks for a token signed with `alg`: signature, `exp` required,
    /// `nbf` honoured, and `aud` when audiences are configured. `iss` is checked by
    /// [`Self::issuer_allowed`] because of the tenant placeholder.
    pub(super) fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY;
        validation.validate_nbf = true;
        if self.audiences.is_empty() {
            validation.set_required_spec_claims(&["exp"]);
            validation.validate_aud = false;
        } else {
            validation.set_required_spec_claims(&["exp", "aud"]);
            validation.set_audience(&self.audiences);
        }
        validation
    }

    /// Whether `iss` is acceptable for a key whose source vouches for `discovered`
    /// (an OIDC issuer). With nothing configured or discovered, any issuer is.
    pub(super) fn issuer_allowed(
        &self,
        iss: Option<&str>,
        tid: Option<&str>,
        discovered: Option<&str>,
    ) -> bool {
        if self.issuers.is_empty() && discovered.is_none() {
            return true;
        }
        let Some(iss) = iss else {
            return false;
        };
        self.issuers
            .iter()
            .map(String::as_str)
            .chain(discovered)
            .any(|pattern| issuer_matches(pattern, iss, tid))
    }

    /// The ferry roles the `roles` claim values grant.
    pub(super) fn roles(&self, values: &[String]) -> BTreeSet<Role> {
        values
            .iter()
            .flat_map(|value| {
                let custom = self
                    .role_claims
                    .iter()
                    .filter(move |claim| claim.value.eq_ignore_ascii_case(value))
                    .map(|claim| claim.role);
                custom.chain(Role::from_claim(value))
            })
            .collect()
    }
}

/// Exact match after putting the token's `tid` in the placeholder, so a tenant-specific
/// issuer also proves the issuer's tenant is the token's tenant.
fn issuer_matches(pattern: &str, iss: &str, tid: Option<&str>) -> bool {
    let has_placeholder = pattern.contains("{tid}") || pattern.contains("{tenantid}");
    match (has_placeholder, tid) {
        (false, _) => pattern == iss,
        (true, Some(tid)) if uuid::Uuid::parse_str(tid).is_ok() => {
            pattern.replace("{tid}", tid).replace("{tenantid}", tid) == iss
        }
        (true, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn entra() -> ClaimPolicy {
        ClaimPolicy {
            issuers: vec![
                "https://sts.windows.net/{tid}/".into(),
                "https://login.microsoftonline.com/{tid}/v2.0".into(),
            ],
            ..ClaimPolicy::default()
        }
    }

    #[test]
    fn tenant_placeholders_must_match_the_tokens_own_tid() {
        let policy = entra();
        let v1 = format!("https://sts.windows.net/{TID}/");
        let v2 = format!("https://login.microsoftonline.com/{TID}/v2.0");
        assert!(policy.issuer_allowed(Some(&v1), Some(TID), None));
        assert!(policy.issuer_allowed(Some(&v2), Some(TID), None));
        let other = "00000000-0000-0000-0000-000000000001";
        assert!(!policy.issuer_allowed(Some(&v1), Some(other), None));
        assert!(!policy.issuer_allowed(Some(&v1), None, None));
        assert!(!policy.issuer_allowed(None, Some(TID), None));
        assert!(!policy.issuer_allowed(
            Some("https://sts.windows.net/{tid}/"),
            Some("{tid}"),
            None
        ));
    }

    #[test]
    fn discovered_issuers_join_the_configured_ones() {
        let open = ClaimPolicy::default();
        assert!(open.issuer_allowed(None, None, None));
        assert!(open.issuer_allowed(Some("anything"), None, None));
        assert!(open.issuer_allowed(Some("https://idp"), None, Some("https://idp")));
        assert!(!open.issuer_allowed(Some("https://other"), None, Some("https://idp")));
        assert!(!open.issuer_allowed(None, None, Some("https://idp")));
        let templated = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let v2 = format!("https://login.microsoftonline.com/{TID}/v2.0");
        assert!(open.issuer_allowed(Some(&v2), Some(TID), Some(templated)));
        assert!(entra().issuer_allowed(Some("https://idp"), Some(TID), Some("https://idp")));
    }

    #[test]
    fn configured_role_claims_add_to_the_defaults() {
        let policy = ClaimPolicy {
            role_claims: vec![
                RoleClaim {
                    value: "AcrImporter".into(),
                    role: Role::DataImporter,
                },
                RoleClaim {
                    value: "Admins".into(),
                    role: Role::Owner,
                },
                RoleClaim {
                    value: "Admins".into(),
                    role: Role::DataReader,
                },
            ],
            ..ClaimPolicy::default()
        };
        let roles = |values: &[&str]| {
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            policy.roles(&values).into_iter().collect::<Vec<_>>()
        };
        assert_eq!(roles(&["AcrImporter"]), [Role::DataImporter]);
        assert_eq!(roles(&["Admins"]), [Role::DataReader, Role::Owner]);
        assert_eq!(
            roles(&["ContainerRegistryContributor", "Nope"]),
            [Role::Contributor]
        );
        assert!(roles(&["DataImporter"]).is_empty());
    }

    #[test]
    fn audiences_become_required_once_configured() {
        let open = ClaimPolicy::default().validation(Algorithm::RS256);
        assert!(!open.validate_aud);
        assert!(!open.required_spec_claims.contains("aud"));
        let strict = ClaimPolicy {
            audiences: vec!["api://ferry".into()],
            ..ClaimPolicy::default()
        }
        .validation(Algorithm::RS256);
        assert!(strict.required_spec_claims.contains("aud"));
        assert_eq!(strict.algorithms, [Algorithm::RS256]);
        assert_eq!((strict.leeway, strict.validate_nbf), (30, true));
    }
}
