//! The sidecar between a real client and a real upstream on 127.0.0.1: forwarding, immediate
//! rejections at the limit, exempt health checks, 502 when the upstream is gone, and the
//! admin endpoints.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use weir_admit::ControllerSpec;
use weir_admit_proxy::{Proxy, ProxyConfig, serve_until};

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let a = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
    (l, a)
}

/// An upstream whose `/slow` waits for the test, `/echo` describes the request it got.
fn upstream(release: Arc<Semaphore>) -> Router {
    Router::new()
        .route(
            "/slow",
            get(move || {
                let release = release.clone();
                async move {
                    let _ = release.acquire().await.map(|p| p.forget());
                    "slow done"
                }
            }),
        )
        .route(
            "/echo",
            get(|req: Request| async move {
                let h = req.headers();
                let get = |n: &str| {
                    h.get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string()
                };
                format!(
                    "{} xff={} conn={} custom={}",
                    req.uri(),
                    get("x-forwarded-for"),
                    get("x-hop"),
                    get("x-custom")
                )
            }),
        )
        .route("/healthz", get(|| async { "upstream ok" }))
}

async fn fetch(
    client: &Client<HttpConnector, Body>,
    url: String,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Body::empty()).unwrap_or_else(|e| panic!("{e}"));
    let resp = client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("request: {e}"));
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("body: {e}"))
        .to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_forwards_admits_up_to_the_limit_and_reports_on_its_admin_port() {
    let release = Arc::new(Semaphore::new(0));
    let (up_l, up_addr) = listener().await;
    let (stop_up, stopped_up) = tokio::sync::oneshot::channel::<()>();
    let up = tokio::spawn(
        axum::serve(up_l, upstream(release.clone()))
            .with_graceful_shutdown(async {
                let _ = stopped_up.await;
            })
            .into_future(),
    );

    let config = ProxyConfig {
        upstream: format!("http://{up_addr}"),
        controller: ControllerSpec::Static { limit: 2 },
        ..ProxyConfig::default()
    };
    let proxy = Proxy::build(&config, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"));
    let gate = proxy.layer().gate().clone();
    let (l, addr) = listener().await;
    let (admin_l, admin) = listener().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_until(proxy, l, admin_l, async {
        let _ = stopped.await;
    }));
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());

    // Forwarded with its query, hop-by-hop headers dropped, x-forwarded-for added.
    let (status, _, body) = fetch(
        &client,
        format!("http://{addr}/echo?x=1"),
        &[
            ("connection", "x-hop"),
            ("x-hop", "secret"),
            ("x-custom", "kept"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body, "/echo?x=1 xff=127.0.0.1 conn=- custom=kept",
        "what the upstream saw"
    );

    // Two slow requests fill the limit; the third is refused at once.
    let mut held = Vec::new();
    for _ in 0..2 {
        let c = client.clone();
        held.push(tokio::spawn(async move {
            fetch(&c, format!("http://{addr}/slow"), &[]).await
        }));
    }
    while gate.in_flight() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, headers, _) = fetch(&client, format!("http://{addr}/slow"), &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    let (status, _, body) = fetch(&client, format!("http://{addr}/healthz"), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "upstream ok"));
    release.add_permits(2);
    for h in held {
        let (status, _, body) = h.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((status, body.as_str()), (StatusCode::OK, "slow done"));
    }

    // The admin port.
    let (status, _, metrics) = fetch(&client, format!("http://{admin}/metrics"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "weir_admit_limit{controller=\"static\"} 2",
        "weir_admit_admitted_total{class=\"default\"} 3",
        "weir_admit_rejected_total{class=\"default\",reason=\"over_limit\"} 1",
        "weir_admit_exempt_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let (_, _, explain) = fetch(&client, format!("http://{admin}/explain"), &[]).await;
    let v: serde_json::Value = serde_json::from_str(&explain).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["controller"], "static");
    assert_eq!(v["limit"], 2);
    assert_eq!(v["rejected"], 1);

    // The upstream gone: 502, and the slot comes back.
    let _ = stop_up.send(());
    up.await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _, body) = fetch(&client, format!("http://{addr}/echo"), &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains(&up_addr.to_string()), "{body}");
    assert_eq!(gate.in_flight(), 0);

    let _ = stop.send(());
    server
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_proxy_with_a_bad_setting_is_not_built_and_the_error_names_file_and_field() {
    let config = ProxyConfig {
        upstream: "http://127.0.0.1:1".into(),
        controller: ControllerSpec::Static { limit: 0 },
        ..ProxyConfig::default()
    };
    let e = Proxy::build(&config, Path::new("/etc/weir/admit.toml"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/etc/weir/admit.toml: limit = 0: must be at least 1: a limit of 0 rejects every request"
    );
    let e = Proxy::build(&ProxyConfig::default(), Path::new("a.toml"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("a.toml: upstream = \"\""), "{e}");
}

/// Sends raw `request` bytes to `addr` and reads the whole answer (the request closes).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    conn.write_all(request)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut resp = Vec::new();
    let _ = conn.read_to_end(&mut resp).await;
    String::from_utf8_lossy(&resp).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_the_limit_gets_413_declared_or_streamed_and_frees_its_slot() {
    let (up_l, up_addr) = listener().await;
    let upstream = Router::new().route(
        "/upload",
        axum::routing::post(|body: axum::body::Bytes| async move { format!("got {}", body.len()) }),
    );
    tokio::spawn(axum::serve(up_l, upstream).into_future());
    let config = ProxyConfig {
        upstream: format!("http://{up_addr}"),
        max_body_bytes: 1000,
        ..ProxyConfig::default()
    };
    let proxy = Proxy::build(&config, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"));
    let gate = proxy.layer().gate().clone();
    let (l, addr) = listener().await;
    let (admin_l, _) = listener().await;
    tokio::spawn(serve_until(proxy, l, admin_l, std::future::pending()));

    let declared = |n: usize| {
        let mut r = format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        r.extend(std::iter::repeat_n(b'a', n));
        r
    };
    let at_limit = raw(addr, &declared(1000)).await;
    assert!(at_limit.starts_with("HTTP/1.1 200"), "{at_limit}");
    assert!(at_limit.ends_with("got 1000"), "{at_limit}");
    let over = raw(addr, &declared(1001)).await;
    assert!(over.starts_with("HTTP/1.1 413"), "{over}");

    // Chunked: no length up front, so the limit bites while the body streams upstream.
    let mut chunked =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"258\r\n");
        chunked.extend(std::iter::repeat_n(b'b', 600));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = raw(addr, &chunked).await;
    assert!(streamed.starts_with("HTTP/1.1 413"), "{streamed}");
    assert!(streamed.contains("limit of 1000 bytes"), "{streamed}");
    assert_eq!(gate.in_flight(), 0, "the refused requests hold no slot");
}

#[test]
fn a_zero_listener_limit_is_refused_by_name() {
    for (config, field) in [
        (
            ProxyConfig {
                max_body_bytes: 0,
                ..ProxyConfig::default()
            },
            "max_body_bytes = 0",
        ),
        (
            ProxyConfig {
                max_connections: 0,
                ..ProxyConfig::default()
            },
            "max_connections = 0",
        ),
        (
            ProxyConfig {
                header_timeout_ms: 0,
                ..ProxyConfig::default()
            },
            "header_timeout_ms = 0",
        ),
    ] {
        let config = ProxyConfig {
            upstream: "http://127.0.0.1:1".into(),
            ..config
        };
        let e = Proxy::build(&config, Path::new("admit.toml"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("admit.toml: {field}")), "{e}");
    }
}
