//! Policy decisions on URLs, redirects, resolved addresses and token realms.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures_util::future::BoxFuture;
use url::Url;

use super::*;

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn policy(allowed: &[&str]) -> EgressPolicy {
    EgressPolicy::default().allowing(allowed).unwrap()
}

#[test]
fn ip_literals_in_every_spelling_are_refused() {
    let strict = policy(&[]);
    for text in [
        "http://127.0.0.1/v2/",
        "http://127.1/v2/",
        "http://0x7f.0.0.1/v2/",
        "http://0177.0.0.1/v2/",
        "http://2130706433/v2/",
        "http://127.0.0.1./v2/",
        "http://[::1]/v2/",
        "http://[::ffff:127.0.0.1]/v2/",
        "http://[::ffff:7f00:1]/v2/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "https://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:5000/",
        "http://[fe80::1]/",
    ] {
        assert!(strict.check_url(&url(text)).is_err(), "{text} passed");
    }
    assert!(strict.check_url(&url("https://8.8.8.8/v2/")).is_ok());
    assert!(
        strict
            .check_url(&url("https://registry.example/v2/"))
            .is_ok()
    );
}

#[test]
fn only_http_and_https_are_allowed() {
    let strict = policy(&[]);
    for text in [
        "file:///etc/passwd",
        "ftp://registry.example/",
        "gopher://x/",
    ] {
        assert!(strict.check_url(&url(text)).is_err(), "{text}");
    }
}

#[test]
fn exceptions_open_exactly_what_they_name() {
    let allowed = policy(&[
        "127.0.0.1",
        "10.1.0.0/16",
        "127.0.0.3:5000",
        "reg.internal:5000",
    ]);
    assert!(allowed.check_url(&url("http://127.0.0.1:9/")).is_ok());
    assert!(allowed.check_url(&url("http://127.1:9/")).is_ok());
    assert!(
        allowed
            .check_url(&url("http://[::ffff:127.0.0.1]:9/"))
            .is_ok()
    );
    assert!(allowed.check_url(&url("http://127.0.0.2:9/")).is_err());
    assert!(allowed.check_url(&url("http://10.1.200.3/")).is_ok());
    assert!(allowed.check_url(&url("http://10.2.0.1/")).is_err());
    assert!(allowed.check_url(&url("http://127.0.0.3:5000/")).is_ok());
    assert!(allowed.check_url(&url("http://127.0.0.3:5001/")).is_err());
    // A name listed with a port is refused on any other port.
    assert!(allowed.check_url(&url("http://reg.internal:5000/")).is_ok());
    assert!(
        allowed
            .check_url(&url("http://reg.internal:6000/"))
            .is_err()
    );
    // Names resolving into an allowed network or listed by name may connect.
    let ip = |t: &str| t.parse::<IpAddr>().unwrap();
    assert!(allowed.allows_resolved("any.example", ip("10.1.0.9")));
    assert!(allowed.allows_resolved("reg.internal", ip("192.168.7.7")));
    assert!(!allowed.allows_resolved("other.internal", ip("192.168.7.7")));
    assert!(!allowed.allows_resolved("other.internal", ip("127.0.0.3")));
    assert!(allowed.allows_resolved("public.example", ip("93.184.216.34")));
}

#[test]
fn redirects_never_downgrade_and_are_checked() {
    let strict = policy(&[]);
    let https = url("https://registry.example/v2/x/blobs/sha256:1");
    assert!(
        strict
            .check_redirect(Some(&https), &url("https://cdn.example/blob?sig=1"))
            .is_ok()
    );
    assert!(
        strict
            .check_redirect(Some(&https), &url("http://cdn.example/blob"))
            .is_err()
    );
    assert!(
        strict
            .check_redirect(Some(&https), &url("https://169.254.169.254/"))
            .is_err()
    );
    let http = url("http://registry.example/");
    assert!(
        strict
            .check_redirect(Some(&http), &url("http://cdn.example/"))
            .is_ok()
    );
}

#[test]
fn credentials_go_only_to_realms_of_the_registry_or_listed_ones() {
    let policy = EgressPolicy::new(&[], &[], &["authn.nvidia.com".into()]).unwrap();
    let realm_ok =
        |registry: &str, realm: &str| policy.realm_may_receive_credentials(registry, &url(realm));
    assert!(realm_ok(
        "registry-1.docker.io",
        "https://auth.docker.io/token"
    ));
    assert!(realm_ok(
        "registry.gitlab.com",
        "https://gitlab.com/jwt/auth"
    ));
    assert!(realm_ok(
        "myreg.azurecr.io",
        "https://myreg.azurecr.io/oauth2/token"
    ));
    assert!(realm_ok("127.0.0.1:5000", "http://127.0.0.1:5001/token"));
    assert!(realm_ok("nvcr.io", "https://authn.nvidia.com/token"));
    assert!(!realm_ok("ghcr.io", "https://evil.io/token"));
    assert!(!realm_ok(
        "registry-1.docker.io",
        "https://docker.io.evil.example/token"
    ));
    assert!(!realm_ok("127.0.0.1:5000", "http://127.0.0.2:5001/token"));
    assert!(!realm_ok("reg.example.com", "https://attacker.com/token"));
}

#[test]
fn source_allowlist_is_open_when_empty_and_exact_otherwise() {
    assert!(EgressPolicy::default().source_listed("anything.example"));
    let listed = EgressPolicy::new(&[], &["docker.io".into(), "*.azurecr.io".into()], &[]).unwrap();
    assert!(listed.source_listed("docker.io"));
    assert!(listed.source_listed("team.azurecr.io"));
    assert!(!listed.source_listed("ghcr.io"));
    assert!(EgressPolicy::new(&["10.0.0.0/99".into()], &[], &[]).is_err());
}

/// Answers with a public address first and an internal one afterwards, as a
/// rebinding DNS server would.
#[derive(Debug, Default)]
struct Rebinding(AtomicUsize);

impl Lookup for Rebinding {
    fn lookup(&self, _: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        let ip = if n == 0 {
            "93.184.216.34"
        } else {
            "169.254.169.254"
        };
        Box::pin(async move { Ok(vec![ip.parse().unwrap()]) })
    }
}

#[tokio::test]
async fn addresses_are_checked_at_every_resolution() {
    let resolver = GuardedResolver::new(Arc::new(policy(&[])), Arc::new(Rebinding::default()));
    assert_eq!(resolver.allowed("rebind.example").await.unwrap().len(), 1);
    let second = resolver.allowed("rebind.example").await.unwrap_err();
    assert!(Refused::found_in(second.as_ref()).is_some());
    assert!(!second.to_string().contains("169.254"));
}

#[tokio::test]
async fn mixed_answers_keep_only_public_addresses() {
    let table = StaticLookup(
        [(
            "mixed.example".to_owned(),
            vec![
                "10.0.0.1".parse().unwrap(),
                "93.184.216.34".parse().unwrap(),
            ],
        )]
        .into(),
    );
    let resolver = GuardedResolver::new(Arc::new(policy(&[])), Arc::new(table));
    assert_eq!(
        resolver.allowed("MIXED.example.").await.unwrap(),
        vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
    );
}

#[tokio::test]
async fn names_resolving_into_any_blocked_range_are_refused() {
    let ranges = [
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "127.0.0.2",
        "169.254.169.254",
        "172.16.0.1",
        "192.168.0.1",
        "198.18.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "168.63.129.16",
        "::1",
        "fc00::1",
        "fe80::1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",
    ];
    let table = StaticLookup(
        ranges
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("n{i}.example"), vec![ip.parse().unwrap()]))
            .collect(),
    );
    let resolver = GuardedResolver::new(Arc::new(policy(&[])), Arc::new(table));
    for (i, ip) in ranges.iter().enumerate() {
        let error = resolver
            .allowed(&format!("n{i}.example"))
            .await
            .unwrap_err();
        assert!(Refused::found_in(error.as_ref()).is_some(), "{ip}: {error}");
        assert!(!error.to_string().contains(ip), "{ip} leaked: {error}");
    }
}
