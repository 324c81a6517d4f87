//! IMDSv2 discovery against a fake IMDS on 127.0.0.1 that behaves like the real one: a token PUT with
//! a TTL header, GETs that need the token, 404 for absent keys, 401 for an expired token, and the
//! failures seen in the field (hangs, connection refused).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::Router;
use nodeprep::host::imds::{ImdsClient, ImdsError};

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Normal,
    /// The first token is rejected with 401 on first use (expired), like IMDS after TTL.
    ExpireFirstToken,
    /// Every request hangs for 30 s.
    Hang,
    /// No placement group (IMDS answers 404 for it).
    NoPlacementGroup,
    /// The instance type is 16 MiB of text (a broken or hostile endpoint).
    HugeReply,
    /// The instance type is a web page (an HTTP proxy's login page, say).
    WebPage,
}

#[derive(Clone)]
struct Fake {
    behaviour: Behaviour,
    tokens_issued: Arc<AtomicUsize>,
    gets: Arc<AtomicUsize>,
}

async fn token(State(f): State<Fake>, headers: HeaderMap) -> (StatusCode, String) {
    if f.behaviour == Behaviour::Hang {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    // Real IMDS: 400 without a valid TTL header.
    let ttl = headers
        .get("X-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match ttl {
        Some(1..=21600) => {
            let n = f.tokens_issued.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, format!("token-{n}"))
        }
        _ => (StatusCode::BAD_REQUEST, String::new()),
    }
}

async fn meta(
    State(f): State<Fake>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    f.gets.fetch_add(1, Ordering::SeqCst);
    let tok = headers.get("X-aws-ec2-metadata-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    let valid = match f.behaviour {
        Behaviour::ExpireFirstToken => tok.starts_with("token-") && tok != "token-0",
        _ => tok.starts_with("token-"),
    };
    if !valid {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    match path.as_str() {
        "instance-type" if f.behaviour == Behaviour::HugeReply => {
            (StatusCode::OK, "p".repeat(16 << 20))
        }
        "instance-type" if f.behaviour == Behaviour::WebPage => {
            (StatusCode::OK, "<html>\n<body>Proxy login</body>\n</html>\n".into())
        }
        "instance-type" => (StatusCode::OK, "p5.48xlarge".into()),
        "placement/availability-zone" => (StatusCode::OK, "us-east-2b".into()),
        "placement/group-name" if f.behaviour != Behaviour::NoPlacementGroup => {
            (StatusCode::OK, "training-cpg".into())
        }
        _ => (StatusCode::NOT_FOUND, String::new()),
    }
}

/// Starts the fake on a thread of its own; returns its base URL and the fake's counters.
fn start(behaviour: Behaviour) -> (String, Fake) {
    let fake = Fake { behaviour, tokens_issued: Arc::default(), gets: Arc::default() };
    let app = Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/{*path}", get(meta))
        .with_state(fake.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (format!("http://{addr}"), fake)
}

#[test]
fn normal_imds_gives_type_placement_group_and_zone() {
    let (url, fake) = start(Behaviour::Normal);
    let facts = ImdsClient::new(&url, Duration::from_secs(1)).facts_blocking().unwrap();
    assert_eq!(facts.instance_type.as_deref(), Some("p5.48xlarge"));
    assert_eq!(facts.placement_group.as_deref(), Some("training-cpg"));
    assert_eq!(facts.availability_zone.as_deref(), Some("us-east-2b"));
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 1, "one token for all requests");
}

#[test]
fn missing_placement_group_is_none_not_an_error() {
    let (url, _) = start(Behaviour::NoPlacementGroup);
    let facts = ImdsClient::new(&url, Duration::from_secs(1)).facts_blocking().unwrap();
    assert_eq!(facts.placement_group, None);
    assert_eq!(facts.instance_type.as_deref(), Some("p5.48xlarge"));
}

#[test]
fn expired_token_401_fetches_a_new_token_once() {
    let (url, fake) = start(Behaviour::ExpireFirstToken);
    let facts = ImdsClient::new(&url, Duration::from_secs(1)).facts_blocking().unwrap();
    assert_eq!(facts.instance_type.as_deref(), Some("p5.48xlarge"));
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 2);
}

#[test]
fn hanging_imds_gives_up_after_two_deadlines() {
    let (url, _) = start(Behaviour::Hang);
    let t0 = Instant::now();
    let err = ImdsClient::new(&url, Duration::from_millis(300)).facts_blocking().unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, ImdsError::Timeout { .. }), "{err}");
    assert!(
        err.to_string().contains("did not answer the token request within 300 ms (tried twice)"),
        "{err}"
    );
    // Two attempts of 300 ms each, not the fake's 30 s.
    assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn an_oversized_reply_is_an_error_not_a_value() {
    let (url, _) = start(Behaviour::HugeReply);
    let t0 = Instant::now();
    let err = ImdsClient::new(&url, Duration::from_secs(1)).facts_blocking().unwrap_err();
    assert!(matches!(err, ImdsError::Reply { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("IMDS at {url} answered instance-type with a reply of more than 4096 bytes")
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn a_reply_that_is_not_an_instance_type_is_an_error() {
    let (url, _) = start(Behaviour::WebPage);
    let err = ImdsClient::new(&url, Duration::from_secs(1)).facts_blocking().unwrap_err();
    assert!(matches!(err, ImdsError::Reply { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("IMDS at {url} answered instance-type with \"<html>\\n<body>Proxy login</body>\\n</html>\", which is not one line of text")
    );
}

#[test]
fn connection_refused_is_reported_with_the_endpoint() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    let err = ImdsClient::new(&url, Duration::from_secs(1)).facts_blocking().unwrap_err();
    assert!(matches!(err, ImdsError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn binary_discovers_instance_type_from_imds_when_dmi_is_absent() {
    let (url, _) = start(Behaviour::Normal);
    let dir = tempfile::tempdir().unwrap();
    let mut spec = nodeprep_fixtures::Spec::empty();
    spec.config = Some(format!("[imds]\nenabled = \"always\"\nendpoint = \"{url}\"\n"));
    spec.write(dir.path()).unwrap();
    let out =
        crate::common::nodeprep(dir.path(), &["--output", "json", "check", "--only", "instance"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["instance_type"], "p5.48xlarge");
    assert_eq!(v["identity"]["source"], "imds");
    assert_eq!(v["identity"]["placement_group"], "training-cpg");
    assert_eq!(v["checks"][0]["found"]["placement_group"], "training-cpg");
}

#[test]
fn binary_reports_no_identity_when_imds_is_down_and_dmi_absent() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut spec = nodeprep_fixtures::Spec::empty();
    spec.config =
        Some(format!("[imds]\nenabled = \"always\"\nendpoint = \"http://127.0.0.1:{port}\"\n"));
    spec.write(dir.path()).unwrap();
    let out = crate::common::nodeprep(dir.path(), &["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "an unidentified node is not failed by identity alone: {text}"
    );
    assert!(text.contains("nodeprep: unknown instance type"), "{text}");
    assert!(text.contains("instance type unknown (DMI: reading"), "{text}");
    assert!(text.contains("is unreachable"), "{text}");
}
