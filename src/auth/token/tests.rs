//! Unit tests of token verification and minting.

use super::*;
use crate::auth::Action;

fn secret() -> SecretString {
    SecretString::from("a-test-secret-that-is-long-enough-1234")
}

#[tokio::test]
async fn minted_tokens_verify_and_carry_roles() {
    let tenant = uuid::Uuid::new_v4();
    let roles = vec![
        "ContainerRegistryDataReader".to_owned(),
        "Unknown".to_owned(),
    ];
    let token = mint_token(&secret(), tenant, &roles, Duration::from_secs(60), "alice").unwrap();
    let principal = TokenVerifier::hs256(&secret())
        .unwrap()
        .verify(&token)
        .await
        .unwrap();
    assert_eq!(principal.tenant.0, tenant);
    assert_eq!(principal.id, "alice");
    assert!(principal.roles.iter().any(|r| r.allows(Action::Read)));
    assert!(!principal.roles.iter().any(|r| r.allows(Action::Import)));
}

#[tokio::test]
async fn other_secrets_and_garbage_are_refused() {
    let token = mint_token(
        &secret(),
        uuid::Uuid::new_v4(),
        &[],
        Duration::from_secs(60),
        "a",
    )
    .unwrap();
    let other =
        TokenVerifier::hs256(&SecretString::from("another-secret-that-is-long-enough-99")).unwrap();
    assert!(matches!(
        other.verify(&token).await,
        Err(ApiError::InvalidToken)
    ));
    assert!(matches!(
        other.verify("not.a.token").await,
        Err(ApiError::InvalidToken)
    ));
    assert!(TokenVerifier::hs256(&SecretString::from("short")).is_err());
    let short = mint_token(
        &SecretString::from(""),
        uuid::Uuid::new_v4(),
        &[],
        Duration::from_secs(60),
        "a",
    );
    assert!(
        short.is_err(),
        "ferry token must not sign with a secret serve refuses"
    );
}

fn hs256(claims: &serde_json::Value, alg: Algorithm) -> String {
    let key = EncodingKey::from_secret(secret().expose_secret().as_bytes());
    jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap()
}

#[test]
fn startup_needs_a_key_source_and_an_audience_for_idp_keys() {
    let error = |config: AuthConfig| TokenVerifier::from_config(&config).unwrap_err().to_string();
    assert!(error(AuthConfig::default()).contains("no token key source"));
    let blank = AuthConfig {
        jwt_secret: Some(SecretString::from("")),
        jwks_url: Some(" ".into()),
        ..AuthConfig::default()
    };
    assert!(error(blank).contains("no token key source"));
    let jwks = AuthConfig {
        jwks_url: Some("http://127.0.0.1:1/keys".into()),
        ..AuthConfig::default()
    };
    assert!(error(jwks.clone()).contains("FERRY_JWT_AUDIENCES is required"));
    let oidc = AuthConfig {
        oidc_issuer: Some("https://idp.example".into()),
        ..AuthConfig::default()
    };
    assert!(error(oidc).contains("FERRY_JWT_AUDIENCES is required"));
    let plain = AuthConfig {
        jwks_url: Some("http://idp.example/keys".into()),
        jwt_audiences: vec!["api://ferry".into()],
        ..AuthConfig::default()
    };
    assert!(format!("{:#}", TokenVerifier::from_config(&plain).unwrap_err()).contains("https"));
    let missing = AuthConfig {
        jwt_public_keys: vec!["/nonexistent/key.pem".into()],
        jwt_audiences: vec!["api://ferry".into()],
        ..AuthConfig::default()
    };
    assert!(error(missing).contains("/nonexistent/key.pem"));
    // Building never contacts the IdP: port 1 on loopback refuses connections.
    let ready = AuthConfig {
        jwt_audiences: vec!["api://ferry".into()],
        ..jwks
    };
    assert!(TokenVerifier::from_config(&ready).is_ok());
}

#[tokio::test]
async fn configured_audience_and_issuer_apply_to_hs256_tokens() {
    let verifier = TokenVerifier::from_config(&AuthConfig {
        jwt_secret: Some(secret()),
        jwt_audiences: vec!["api://ferry".into(), "api://other".into()],
        jwt_issuers: vec!["https://idp.test/{tid}/".into()],
        ..AuthConfig::default()
    })
    .unwrap();
    let tid = uuid::Uuid::new_v4();
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = serde_json::json!({
        "tid": tid, "sub": "s", "azp": "client-app", "aud": "api://ferry",
        "iss": format!("https://idp.test/{tid}/"), "exp": exp,
    });
    let principal = verifier
        .verify(&hs256(&good, Algorithm::HS256))
        .await
        .unwrap();
    assert_eq!(principal.application.as_deref(), Some("client-app"));
    assert_eq!(principal.tenant.0, tid);
    // `ferry token --audience --issuer` mints what such a server accepts.
    let issuer = format!("https://idp.test/{tid}/");
    let minted = mint_token_for(
        &secret(),
        tid,
        &[],
        Duration::from_secs(60),
        "cli",
        Some("api://ferry"),
        Some(&issuer),
    )
    .unwrap();
    assert_eq!(verifier.verify(&minted).await.unwrap().id, "cli");
    let plain = mint_token(&secret(), tid, &[], Duration::from_secs(60), "cli").unwrap();
    assert!(verifier.verify(&plain).await.is_err());

    let mut no_aud = good.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    let mut other_tenant = good.clone();
    other_tenant["iss"] = format!("https://idp.test/{}/", uuid::Uuid::new_v4()).into();
    let mut no_iss = good.clone();
    no_iss.as_object_mut().unwrap().remove("iss");
    for (claims, alg) in [
        (&no_aud, Algorithm::HS256),
        (&other_tenant, Algorithm::HS256),
        (&no_iss, Algorithm::HS256),
        (&good, Algorithm::HS384),
    ] {
        assert!(
            matches!(
                verifier.verify(&hs256(claims, alg)).await,
                Err(ApiError::InvalidToken)
            ),
            "{claims} {alg:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_jwks_refuses_tokens_instead_of_failing() {
    let verifier = TokenVerifier::from_config(&AuthConfig {
        jwt_secret: Some(secret()),
        jwks_url: Some("http://127.0.0.1:1/keys".into()),
        jwt_audiences: vec!["api://ferry".into()],
        ..AuthConfig::default()
    })
    .unwrap();
    // An RS256 header with a made-up signature: refused once the fetch fails.
    let header = r#"{"alg":"RS256","kid":"k1"}"#;
    let claims = r#"{"tid":"00000000-0000-0000-0000-000000000001","sub":"s","exp":9999999999}"#;
    let b64 = |part: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(part)
    };
    let token = format!("{}.{}.AAAA", b64(header), b64(claims));
    assert!(matches!(
        verifier.verify(&token).await,
        Err(ApiError::InvalidToken)
    ));
}
